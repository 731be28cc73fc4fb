"""The Keras callbacks of a run: recording each stage, honouring stop requests, the progress of the
one-time feature extraction, and early stopping (:func:`stage_callbacks` is the one place a stage's
list is made)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agelab import atomic
from agelab.training import checkpoints
from agelab.training.errors import RunError, StopAtBatch
from agelab.training.recorder import RunRecorder, number
from agelab.training.stop import StopRequest

import keras  # noqa: E402  isort: skip  (after agelab, which sets KERAS_HOME)


class RecordStage(keras.callbacks.Callback):
    """Feeds one stage's batches and epochs to the run's :class:`RunRecorder`; a NaN loss ends the
    run with its reason. ``snapshot_model`` is the full model, whose weights the best epoch keeps
    (in fast mode ``fit()`` trains the heads alone)."""

    def __init__(self, recorder: RunRecorder, stage: str, steps: int, snapshot_model: Any) -> None:
        super().__init__()
        self.recorder = recorder
        self.stage = stage
        self.steps = steps
        self.snapshot_model = snapshot_model
        self.epoch = 0
        self.epoch_start = 0.0
        self.epoch_steps = 0
        self.last_batch_end = 0.0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.recorder.start()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch + 1
        self.epoch_start = time.time()
        self.epoch_steps = 0
        self.recorder.write_progress(self.stage, self.epoch, 0, self.steps, {}, force=True)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.recorder.steps_done += 1
        self.epoch_steps += 1
        self.last_batch_end = time.time()
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(number(loss)):
            raise RunError(
                f"loss became NaN at epoch {self.epoch} (batch {batch + 1}, stage {self.stage}): the"
                " run diverged; lower learning_rate or fine_tune_learning_rate and launch it again"
            )
        self.recorder.write_progress(self.stage, self.epoch, batch + 1, self.steps, logs or {})

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = dict(logs or {})
        if self.last_batch_end:  # what follows the last batch is the validation pass
            self.recorder.val_seconds = time.time() - self.last_batch_end
        self.recorder.record_epoch(
            self.stage,
            epoch + 1,
            logs,
            time.time() - self.epoch_start,
            self.epoch_steps,
            self.model.optimizer.learning_rate,
            self.snapshot_model,
        )
        self.recorder.write_progress(self.stage, epoch + 1, self.epoch_steps, self.steps, logs, force=True)


class StopOnRequest(keras.callbacks.Callback):
    """Ends ``fit()`` after the current batch (raising :class:`StopAtBatch`, so Keras does not run the
    cut-short epoch's validation pass), and ``predict()`` likewise, once a stop is requested."""

    def __init__(self, stopper: StopRequest) -> None:
        super().__init__()
        self.stopper = stopper

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.stopper.requested:
            self.model.stop_training = True
            raise StopAtBatch()

    def on_predict_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.stopper.requested and hasattr(self.model, "stop_predicting"):
            self.model.stop_predicting = True


class FeatureProgress(keras.callbacks.Callback):
    """progress.json during the one-time feature extraction of fast mode (every 5th batch)."""

    def __init__(self, run_dir: Path, steps: int) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.steps = steps
        self.started = time.time()

    def on_predict_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        done = batch + 1
        if done % 5 and done != self.steps:
            return
        elapsed = time.time() - self.started
        atomic.write_json(
            self.run_dir / "progress.json",
            {
                "stage": "features",
                "epoch": 0,
                "epochs_total": 0,
                "batch": done,
                "steps": self.steps,
                "elapsed_s": round(elapsed, 1),
                "eta_s": round(elapsed / done * (self.steps - done), 1),
                "updated": time.time(),
            },
        )


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Early stopping on val_loss whose count of epochs without a gain can start where a checkpoint
    left it (``earlier``: ``wait``, ``best``, ``best_epoch``), so a resumed stage stops when it would have."""

    def __init__(self, patience: int, earlier: dict[str, Any] | None = None) -> None:
        super().__init__("val_loss", patience=patience)
        self.earlier = earlier

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_begin(logs)
        if self.earlier:
            self.wait = int(self.earlier["wait"])
            self.best = self.earlier["best"]
            self.best_epoch = int(self.earlier["best_epoch"])

    def state(self) -> dict[str, Any]:
        best = None if self.best is None else float(self.best)
        return {"wait": self.wait, "best": best, "best_epoch": self.best_epoch}


@dataclass(frozen=True)
class StagePlace:
    """Where a stage sits in its run, as a checkpoint records it: its index among the run's stages and
    the run's epoch count when it began."""

    index: int
    start_epoch: int


class SaveCheckpoint(keras.callbacks.Callback):
    """After every epoch (after the record and early stopping have seen it), the run's checkpoint:
    :mod:`agelab.training.checkpoints`. ``self.model`` is the stage's model, whose optimizer is saved."""

    def __init__(
        self,
        recorder: RunRecorder,
        stage: str,
        place: StagePlace,
        snapshot_model: Any,
        keep: int,
        early: ResumableEarlyStopping | None,
    ) -> None:
        super().__init__()
        self.recorder, self.stage, self.place = recorder, stage, place
        self.snapshot_model, self.keep, self.early = snapshot_model, keep, early

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        recorder = self.recorder
        state = {
            "epoch": epoch + 1,
            "stage": self.stage,
            "stage_index": self.place.index,
            "stage_start": self.place.start_epoch,
            # Early stopping ended the stage with this epoch: a resume goes on with the next stage.
            "stage_done": bool(self.model.stop_training),
            "early_stopping": self.early.state() if self.early else None,
            "recorder": recorder.state(),
        }
        # The best weights when they are not this epoch's own (which the model variables hold).
        best = recorder.best_weights if recorder.best_epoch not in (0, epoch + 1) else None
        checkpoints.save(recorder.run_dir, state, self.snapshot_model, self.model.optimizer, best, self.keep)


def stage_callbacks(
    recorder: RunRecorder,
    stage: str,
    steps: int,
    snapshot_model: Any,
    stopper: StopRequest,
    config: dict[str, Any],
    place: StagePlace,
    earlier_stop: dict[str, Any] | None = None,
) -> list[keras.callbacks.Callback]:
    """Every callback of one stage's ``fit()``: the record, then the stop request (so the batch that
    saw it is recorded first), then early stopping on val_loss when ``early_stopping`` (its patience),
    then the epoch's checkpoint (``keep_checkpoints`` of them kept)."""
    callbacks = [RecordStage(recorder, stage, steps, snapshot_model), StopOnRequest(stopper)]
    early = None
    if config["early_stopping"]:
        early = ResumableEarlyStopping(config["early_stopping"], earlier_stop)
        callbacks.append(early)
    callbacks.append(
        SaveCheckpoint(recorder, stage, place, snapshot_model, config.get("keep_checkpoints", 0), early)
    )
    return callbacks
