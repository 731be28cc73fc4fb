"""What a run records as it trains: progress.json (throttled, batch level), history.csv, TensorBoard
scalars, console lines, and the weights of the best epoch by val_loss."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from agelab import atomic
from agelab.training.events import ScalarEvents
from agelab.training.plan import Plan


def number(value: Any) -> float:
    """A logged value (tensor, array, float) as a float; NaN when it is none of those."""
    try:
        return float(np.asarray(value))
    except (TypeError, ValueError):
        return float("nan")


# The LiteRT export of a model, both twins' worth, on this project's 2-core CPU (6-30 s measured).
EXPORT_SECONDS = 20.0


class RunRecorder:
    """The record of one run across all its stages; :class:`agelab.training.callbacks.RecordStage`
    feeds it from ``fit()``."""

    def __init__(self, run_dir: Path, plan: Plan, batch_size: int) -> None:
        self.run_dir = run_dir
        self.plan = plan
        self.batch_size = batch_size
        self.history: list[dict[str, Any]] = []
        self.curve: list[list[float]] = []
        self.steps_done = 0
        self.started: float | None = None
        self.train_seconds = 0.0
        self.best_val_loss = float("inf")
        self.best_epoch = 0
        self.best_weights: list[np.ndarray] | None = None
        self.last_write = 0.0
        self.pace_from: tuple[float, int] | None = None
        # What the run does after its last batch, in validation passes: calibration predicts the
        # validation split once, then the test split is scored through the detector and the LiteRT
        # twin (``finish_passes``, set by the trainer from the splits' sizes), then the export.
        self.val_seconds: float | None = None
        self.finish_passes = 1.0
        self.events = ScalarEvents(run_dir / "tb")

    def start(self) -> None:
        self.started = self.started or time.time()

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the record, so that a resumed run's record goes on from it."""
        return {
            "history": self.history,
            "curve": self.curve,
            "steps_done": self.steps_done,
            "train_seconds": self.train_seconds,
            "best_val_loss": None if self.best_epoch == 0 else self.best_val_loss,
            "best_epoch": self.best_epoch,
        }

    def restore(self, state: dict[str, Any], best_weights: list[np.ndarray] | None) -> None:
        """The record as a checkpoint left it (:meth:`state`); ``history.csv`` rewritten to match, since
        it may hold an epoch the checkpoint does not (a process killed between the two writes)."""
        self.history = [dict(row) for row in state["history"]]
        self.curve = [list(point) for point in state["curve"]]
        self.steps_done = int(state["steps_done"])
        self.train_seconds = float(state["train_seconds"])
        self.best_epoch = int(state["best_epoch"])
        self.best_val_loss = float("inf") if state["best_val_loss"] is None else float(state["best_val_loss"])
        self.best_weights = best_weights
        atomic.write_text(self.run_dir / "history.csv", pd.DataFrame(self.history).to_csv(index=False))

    def record_epoch(
        self,
        stage: str,
        epoch: int,
        logs: dict[str, Any],
        seconds: float,
        steps: int,
        learning_rate: Any,
        snapshot_model: Any,
    ) -> None:
        """One finished epoch (1-based ``epoch``, ``steps`` batches in ``seconds``): a history row,
        its scalars, the best weights so far (of ``snapshot_model``, the full model) and a console line."""
        self.train_seconds += seconds
        row = {"epoch": epoch, "stage": stage, **{k: number(v) for k, v in logs.items()}}
        row["learning_rate"] = number(learning_rate)
        row["seconds"] = round(seconds, 2)
        row["images_per_s"] = round(steps * self.batch_size / max(seconds, 1e-9), 1)
        row["steps"] = steps
        self.history.append(row)
        self.events.write(epoch, {k: v for k, v in row.items() if isinstance(v, float)})
        atomic.write_text(self.run_dir / "history.csv", pd.DataFrame(self.history).to_csv(index=False))
        val_loss = logs.get("val_loss")
        if val_loss is not None and val_loss < self.best_val_loss:
            self.best_val_loss = float(val_loss)
            self.best_epoch = epoch
            self.best_weights = snapshot_model.get_weights()
        shown = "  ".join(f"{k}={number(v):.4g}" for k, v in logs.items() if "loss" in k or "acc" in k)
        print(f"[{stage}] epoch {epoch}/{self.plan.total_epochs} {seconds:.1f}s  {shown}", flush=True)

    def keep_weights(self, model: Any, keep: str) -> int:
        """Set ``model`` to the weights the run keeps (``keep``: ``best`` or ``last``); their epoch."""
        if keep == "last" and self.history:
            # A cosine schedule ends at its lowest rate: there the model has settled, while the
            # validation loss can dip by chance mid-way (measured in docs/recipes.md).
            return len(self.history)
        if self.best_weights is not None:
            model.set_weights(self.best_weights)
        return self.best_epoch

    def finish_estimate(self) -> float:
        """Seconds of calibration, test scoring and LiteRT export still ahead of the last batch."""
        if self.val_seconds is None:
            return 0.0
        return self.val_seconds * self.finish_passes + EXPORT_SECONDS

    def write_progress(
        self, stage: str, epoch: int, batch: int, steps: int, logs: dict[str, Any], force: bool = False
    ) -> None:
        moment = time.time()
        if self.steps_done and self.pace_from is None:
            # The pace is measured from the end of the first batch: that one includes tracing, and
            # counting it made a 12 s run's first ETA read 35 minutes.
            self.pace_from = (moment, self.steps_done)
        if not force and moment - self.last_write < 1.0:
            return
        self.last_write = moment
        elapsed = moment - (self.started or moment)
        remaining = max(self.plan.total_steps - self.steps_done, 0)
        eta = None
        if self.pace_from is not None and self.steps_done - self.pace_from[1] >= 2:
            pace = (moment - self.pace_from[0]) / (self.steps_done - self.pace_from[1])
            eta = pace * remaining + self.finish_estimate()
        if "loss" in logs:
            self.curve.append([self.steps_done, number(logs["loss"])])
            self.curve = self.curve[-1000:]
        atomic.write_json(
            self.run_dir / "progress.json",
            {
                "stage": stage,
                "epoch": epoch,
                "epochs_total": self.plan.total_epochs,
                "batch": batch,
                "steps": steps,
                "steps_done": self.steps_done,
                "steps_total": self.plan.total_steps,
                "logs": {k: number(v) for k, v in logs.items()},
                "elapsed_s": round(elapsed, 1),
                "eta_s": None if eta is None else round(eta, 1),
                "images_per_s": round(self.steps_done * self.batch_size / elapsed, 1)
                if elapsed > 0
                else None,
                "curve": self.curve,
                "updated": moment,
            },
        )
