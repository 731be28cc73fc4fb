"""The Keras callbacks of a run: recording each stage, honouring stop requests, the progress of the
one-time feature extraction, and early stopping (:func:`stage_callbacks` is the one place a stage's
list is made)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from agelab import atomic
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


def stage_callbacks(
    recorder: RunRecorder,
    stage: str,
    steps: int,
    snapshot_model: Any,
    stopper: StopRequest,
    early_stopping: int,
) -> list[keras.callbacks.Callback]:
    """Every callback of one stage's ``fit()``: the record, then the stop request (so the batch that
    saw it is recorded first), then early stopping on val_loss when ``early_stopping`` (its patience)."""
    callbacks = [RecordStage(recorder, stage, steps, snapshot_model), StopOnRequest(stopper)]
    if early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping("val_loss", patience=early_stopping))
    return callbacks
