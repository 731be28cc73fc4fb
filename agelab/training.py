"""Training: stages of ``fit()`` with callbacks, fast mode, and the ``train`` verb.

``python -m agelab train key=value ... [--config run.yaml]`` runs in this process and prints the
run folder as its last line; the dashboard starts the same command detached (``runs.launch``).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import socket
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd

from agelab import atomic, runs
from agelab.config import ConfigError, build_config, describe_options, load_config_file, parse_overrides


class TrainingFailed(RuntimeError):
    def __init__(self, run_dir: Path, message: str) -> None:
        super().__init__(message)
        self.run_dir = run_dir


class RunError(RuntimeError):
    """A run that cannot go on, for a reason one sentence says (recorded without a traceback)."""


class RunStopped(Exception):
    """A stop request arrived before the first epoch ended: nothing to save."""


def failure_reason(err: BaseException, run_dir: Path) -> str | None:
    """The one-sentence reason of a failure that needs no traceback, or None for a crash."""
    if isinstance(err, RunError):
        return str(err)
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        where = f" ({err.filename})" if err.filename else ""
        return (
            f"the disk is full: no space left on device{where} while run {run_dir.name} was writing;"
            " free some space, then launch the run again"
        )
    return None


class StopRequest:
    """SIGTERM/SIGINT ask the run to stop after the current batch; a second one ends it at once."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.requested = False
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            runs.write_status_from_signal(self.run_dir, status="stopped", killed=True, ended=time.time())
            print("second stop: ending now without saving", flush=True)
            os._exit(128 + signum)
        self.requested = True
        print("stop requested: finishing the current batch, then saving", flush=True)


# ---------------------------------------------------------------- devices


def describe_device() -> tuple[str, list[Any]]:
    """A one-line device description and the visible GPUs."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return f"CPU ({os.cpu_count()} cores)", []
    names = []
    for gpu in gpus:
        try:
            names.append(tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name))
        except Exception:  # details are optional; the device itself is what matters
            names.append(gpu.name)
    return f"GPU x{len(gpus)}: {', '.join(names)}", gpus


def make_strategy(devices: list[Any]):
    """``MirroredStrategy`` over several devices (the visible GPUs, or logical device names such
    as ``/device:CPU:1``), else the default strategy. The model is built and compiled in its scope,
    and each batch of ``batch_size`` per replica makes one global batch."""
    import tensorflow as tf

    if len(devices) > 1:
        names = [d for d in devices if isinstance(d, str)]
        return tf.distribute.MirroredStrategy(devices=names) if names else tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


# ---------------------------------------------------------------- callbacks


@dataclass
class Plan:
    """Stages and their sizes, for progress and ETA."""

    stages: list[tuple[str, int, int]] = field(default_factory=list)  # (name, epochs, steps)

    @property
    def total_epochs(self) -> int:
        return sum(e for _, e, _ in self.stages)

    @property
    def total_steps(self) -> int:
        return sum(e * s for _, e, s in self.stages)


def _callbacks_base():
    import keras

    return keras.callbacks.Callback


class ScalarEvents:
    """Per-epoch scalars as TensorBoard event files under ``tb/train`` and ``tb/validation``.

    Written with TensorFlow's own TFRecord writer and protos, because ``tf.summary`` needs the
    separate tensorboard package, which a training machine may lack.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._writers: dict[str, Any] = {}

    def _writer(self, kind: str):
        if kind not in self._writers:
            import tensorflow as tf
            from tensorflow.core.util import event_pb2

            (self.folder / kind).mkdir(parents=True, exist_ok=True)
            name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
            writer = tf.io.TFRecordWriter(str(self.folder / kind / name))
            writer.write(
                event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString()
            )
            self._writers[kind] = writer
        return self._writers[kind]

    def write(self, step: int, logs: dict[str, float]) -> None:
        from tensorflow.core.framework import summary_pb2
        from tensorflow.core.util import event_pb2

        for kind in ("train", "validation"):
            values = [
                summary_pb2.Summary.Value(tag="epoch_" + key.removeprefix("val_"), simple_value=value)
                for key, value in logs.items()
                if key.startswith("val_") == (kind == "validation") and np.isfinite(value)
            ]
            if values:
                event = event_pb2.Event(
                    wall_time=time.time(), step=step, summary=summary_pb2.Summary(value=values)
                )
                writer = self._writer(kind)
                writer.write(event.SerializeToString())
                writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()


class RunRecorder:
    """Writes progress.json (throttled, batch level), history.csv and console lines, keeps the
    best weights by val_loss, and turns a stop request into ``stop_training``."""

    def __init__(self, run_dir: Path, plan: Plan, stopper: StopRequest, batch_size: int) -> None:
        self.run_dir = run_dir
        self.plan = plan
        self.stopper = stopper
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
        self.events = ScalarEvents(run_dir / "tb")

    def callback(self, stage: str, steps: int, snapshot_model):
        """A Keras callback for one stage; ``snapshot_model`` is the full model whose weights are kept."""
        recorder = self
        Base = _callbacks_base()

        class _Callback(Base):
            def on_train_begin(self, logs=None):
                recorder.started = recorder.started or time.time()

            def on_epoch_begin(self, epoch, logs=None):
                self.epoch = epoch + 1
                self.epoch_start = time.time()
                self.epoch_steps = 0
                recorder.write_progress(stage, self.epoch, 0, steps, {}, force=True)

            def on_train_batch_end(self, batch, logs=None):
                recorder.steps_done += 1
                self.epoch_steps += 1
                loss = (logs or {}).get("loss")
                if loss is not None and not np.isfinite(_number(loss)):
                    raise RunError(
                        f"loss became NaN at epoch {self.epoch} (batch {batch + 1}, stage {stage}): the"
                        " run diverged; lower learning_rate or fine_tune_learning_rate and launch it again"
                    )
                recorder.write_progress(stage, self.epoch, batch + 1, steps, logs or {})
                if recorder.stopper.requested:
                    self.model.stop_training = True

            def on_epoch_end(self, epoch, logs=None):
                logs = dict(logs or {})
                seconds = time.time() - self.epoch_start
                recorder.train_seconds += seconds
                row = {"epoch": epoch + 1, "stage": stage, **{k: _number(v) for k, v in logs.items()}}
                row["learning_rate"] = _number(self.model.optimizer.learning_rate)
                row["seconds"] = round(seconds, 2)
                row["images_per_s"] = round(self.epoch_steps * recorder.batch_size / max(seconds, 1e-9), 1)
                recorder.history.append(row)
                recorder.events.write(epoch + 1, {k: v for k, v in row.items() if isinstance(v, float)})
                atomic.write_text(
                    recorder.run_dir / "history.csv", pd.DataFrame(recorder.history).to_csv(index=False)
                )
                val_loss = logs.get("val_loss")
                if val_loss is not None and val_loss < recorder.best_val_loss:
                    recorder.best_val_loss = float(val_loss)
                    recorder.best_epoch = epoch + 1
                    recorder.best_weights = snapshot_model.get_weights()
                shown = "  ".join(
                    f"{k}={_number(v):.4g}" for k, v in logs.items() if "loss" in k or "acc" in k
                )
                print(
                    f"[{stage}] epoch {epoch + 1}/{recorder.plan.total_epochs} {seconds:.1f}s  {shown}",
                    flush=True,
                )
                recorder.write_progress(stage, epoch + 1, self.epoch_steps, steps, logs, force=True)

        return _Callback()

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
            eta = pace * remaining
        if "loss" in logs:
            self.curve.append([self.steps_done, _number(logs["loss"])])
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
                "logs": {k: _number(v) for k, v in logs.items()},
                "elapsed_s": round(elapsed, 1),
                "eta_s": None if eta is None else round(eta, 1),
                "images_per_s": round(self.steps_done * self.batch_size / elapsed, 1)
                if elapsed > 0
                else None,
                "curve": self.curve,
                "updated": moment,
            },
        )


def _number(value: Any) -> float:
    try:
        return float(np.asarray(value))
    except (TypeError, ValueError):
        return float("nan")


class FeatureProgress:
    """Progress of the one-time feature extraction in fast mode."""

    def __init__(self, run_dir: Path, steps: int, stopper: StopRequest) -> None:
        Base = _callbacks_base()
        self.started = time.time()
        outer = self

        class _Callback(Base):
            def on_predict_batch_end(self, batch, logs=None):
                done = batch + 1
                elapsed = time.time() - outer.started
                if stopper.requested and hasattr(self.model, "stop_predicting"):
                    self.model.stop_predicting = True
                if done % 5 and done != steps:
                    return
                atomic.write_json(
                    run_dir / "progress.json",
                    {
                        "stage": "features",
                        "epoch": 0,
                        "epochs_total": 0,
                        "batch": done,
                        "steps": steps,
                        "elapsed_s": round(elapsed, 1),
                        "eta_s": round(elapsed / done * (steps - done), 1),
                        "updated": time.time(),
                    },
                )

        self.callback = _Callback()


# ---------------------------------------------------------------- the run


def compile_model(model, learning_rate: float, config: dict[str, Any], total_steps: int = 0) -> None:
    """Compile with the multi-task losses; ``lr_schedule=cosine`` decays over ``total_steps``."""
    import keras

    if config.get("lr_schedule") == "cosine" and total_steps > 0:
        # A short warm-up keeps freshly unfrozen layers from being wrecked by the first large
        # steps (measured: val loss rose in the first fine-tuning epoch without it); the decay
        # ends at 1% of the peak so the last epochs settle instead of bouncing around.
        warmup = total_steps // 20
        learning_rate = keras.optimizers.schedules.CosineDecay(
            learning_rate / 10,
            total_steps - warmup,
            alpha=0.01,
            warmup_target=learning_rate,
            warmup_steps=warmup,
        )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss={
            "age_bin": keras.losses.SparseCategoricalCrossentropy(),
            "age": keras.losses.MeanAbsoluteError(),
            "gender": keras.losses.BinaryCrossentropy(),
        },
        loss_weights={
            "age_bin": config["loss_weight_age_bin"],
            "age": config["loss_weight_age"],
            "gender": config["loss_weight_gender"],
        },
        metrics={
            "age_bin": [keras.metrics.SparseCategoricalAccuracy(name="acc")],
            "age": [keras.metrics.MeanAbsoluteError(name="mae")],
            "gender": [keras.metrics.BinaryAccuracy(name="acc")],
        },
        jit_compile=False,  # XLA measured 3-8x slower on this CPU
    )


def summary_metrics(predictions: pd.DataFrame) -> dict[str, float]:
    distance = (predictions["pred_bin"] - predictions["true_bin"]).abs()
    return {
        "test_bin_accuracy": round(float((distance == 0).mean()), 4),
        "test_within_one_bin": round(float((distance <= 1).mean()), 4),
        "test_age_mae": round(float((predictions["pred_age"] - predictions["age"]).abs().mean()), 3),
        "test_gender_accuracy": round(float((predictions["pred_gender"] == predictions["gender"]).mean()), 4),
        "n_test": int(len(predictions)),
    }


class Trainer:
    def __init__(self, config: dict[str, Any], run_dir: Path, stopper: StopRequest, gpus: list[Any]) -> None:
        self.config = config
        self.run_dir = run_dir
        self.stopper = stopper
        self.gpus = gpus
        self.metrics: dict[str, Any] = {}
        self.test_features: np.ndarray | None = None

    def log(self, message: str) -> None:
        print(message, flush=True)

    def run(self) -> None:
        import keras

        from agelab import calibration, evaluation, models, pipeline
        from agelab.bins import get_scheme
        from agelab.data import load_dataset
        from agelab.rebalance import rebalance

        c = self.config
        started = time.time()
        # Our datasets shuffle themselves; fit() warns about its own shuffle flag otherwise.
        warnings.filterwarnings("ignore", message=".*`shuffle=True` was passed.*")
        keras.utils.set_random_seed(c["seed"])
        if c["mixed_precision"]:
            if self.gpus:
                keras.mixed_precision.set_global_policy("mixed_float16")
            else:
                self.log("mixed_precision=true is ignored: no GPU")
        scheme = get_scheme(c["bins"])

        frame = load_dataset(c["data"])
        if frame.empty:
            raise RunError(f"no well-named UTKFace image in {c['data']}: point data= at the UTKFace images")
        if c.get("exclude"):
            from agelab.marks import excluded_files

            # Faces marked "label looks wrong" on the Review page, left out of every split.
            dropped = frame["file"].isin(excluded_files(c["exclude"]))
            frame = frame[~dropped].reset_index(drop=True)
            self.metrics["n_excluded"] = int(dropped.sum())
            self.log(f"exclude {c['exclude']}: {int(dropped.sum())} marked images left out")
        frame = pipeline.stratified_subset(frame, c["max_images"], scheme, c["seed"])
        if c["crop"] == "aligned":
            from agelab.crop_cache import aligned_inputs

            # Train on what predict feeds the model: the detector's aligned crop of each image.
            frame = aligned_inputs(frame, c["image_size"], self.log)
        splits = {
            name: frame[frame["split"] == name].reset_index(drop=True) for name in ("train", "val", "test")
        }
        for name, part in splits.items():
            if part.empty:
                advice = "raise max_images" if c["max_images"] else "the data folder needs more images"
                raise RunError(f"the {name} split is empty ({len(frame)} images in all): {advice}")
        train_frame = rebalance(
            splits["train"], c["rebalance"], scheme, by_race=c["rebalance_by_race"], seed=c["seed"]
        )
        weights = train_frame["weight"].to_numpy() if c["rebalance"] == "class_weights" else None
        self.log(
            f"data {c['data']}: {len(frame)} images; train {len(splits['train'])} "
            f"(after rebalance={c['rebalance']}: {len(train_frame)}), val {len(splits['val'])}, "
            f"test {len(splits['test'])}; bins {scheme.spec} ({scheme.num_bins})"
        )
        self.metrics.update(
            n_train=len(train_frame), n_val=len(splits["val"]), n_images=len(frame), data_seconds=0.0
        )
        self.metrics["data_seconds"] = round(time.time() - started, 2)

        strategy = self.strategy = make_strategy(self.gpus)
        with strategy.scope():
            built = models.create_from_config(c, scheme.num_bins)
        self.log(f"model {c['model']}: {built.model.count_params():,} parameters")

        augmentation = pipeline.Augmentation.from_config(c)
        # batch_size is per replica: the global batch grows with the replica count.
        replicas = max(1, strategy.num_replicas_in_sync)
        batch = c["batch_size"] * replicas
        self.metrics.update(replicas=replicas, global_batch=batch)
        if replicas > 1:
            self.log(f"{type(strategy).__name__}: {replicas} replicas, global batch {batch}")
        fine_tune = bool(built.backbone is not None and c["fine_tune_layers"] and c["fine_tune_epochs"])
        image_steps = -(-len(train_frame) // batch)
        plan = Plan()
        first = "heads_fast" if c["fast"] else ("heads" if built.backbone is not None else "train")
        plan.stages.append((first, c["epochs"], image_steps))
        if fine_tune:
            plan.stages.append(("fine_tune", c["fine_tune_epochs"], image_steps))
        recorder = RunRecorder(self.run_dir, plan, self.stopper, batch)

        disk_cache = None
        image_data: dict[str, tuple[Any, int]] = {}

        def images(split: str):
            nonlocal disk_cache
            if split not in image_data:
                mode = pipeline.choose_cache(c["cache"], len(frame) + len(train_frame), c["image_size"])
                cache = "memory"
                if mode == "disk":
                    disk_cache = disk_cache or pipeline.DiskCache()
                    cache = disk_cache.file(split)
                source = train_frame if split == "train" else splits[split]
                image_data[split] = pipeline.image_dataset(
                    source,
                    scheme,
                    c["image_size"],
                    batch,
                    training=split == "train",
                    augmentation=augmentation,
                    cache=cache,
                    weights=weights if split == "train" else None,
                    seed=c["seed"],
                )
            return image_data[split]

        epoch = 0
        fine_tuned = False
        try:
            if c["fast"]:
                epoch = self._fast_stage(built, splits, train_frame, weights, recorder, batch)
            elif not self.stopper.requested:
                with strategy.scope():
                    compile_model(built.model, c["learning_rate"], c, image_steps * c["epochs"])
                epoch = self._fit(built.model, first, images, recorder, built.model, 0, c["epochs"])
            if fine_tune and not self.stopper.requested:
                opened = models.unfreeze_top(built.backbone, c["fine_tune_layers"])
                self.log(
                    f"fine-tuning the top {c['fine_tune_layers']} backbone layers ({opened} with weights)"
                )
                with strategy.scope():
                    compile_model(
                        built.model, c["fine_tune_learning_rate"], c, image_steps * c["fine_tune_epochs"]
                    )
                fine_tuned = True
                epoch = self._fit(
                    built.model, "fine_tune", images, recorder, built.model, epoch, c["fine_tune_epochs"]
                )
            kept_epoch = recorder.best_epoch
            if c["keep"] == "last" and recorder.history:
                # A cosine schedule ends at its lowest rate: there the model has settled, while the
                # validation loss can dip by chance mid-way (measured in docs/recipes.md).
                kept_epoch = len(recorder.history)
            elif recorder.best_weights is not None:
                built.model.set_weights(recorder.best_weights)
            sidecar = {
                "bins": scheme.spec,
                "bin_labels": scheme.labels,
                "image_size": c["image_size"],
                "model": c["model"],
                "alpha": c["alpha"],
                "age_head": c["age_head"],
                "run": self.run_dir.name,
                "best_epoch": recorder.best_epoch,
                "kept_epoch": kept_epoch,
                "crop": c["crop"],
            }
            # Confidence that means something: temperatures fitted on the validation split.
            val_outputs = self._predict(built.model, splits["val"], scheme, batch)
            sidecar["calibration"] = calibration.calibrate(
                val_outputs["age_bin"],
                scheme.bin_of(splits["val"]["age"].to_numpy()),
                val_outputs["prob_female"],
                splits["val"]["gender"].to_numpy() == 1,
            )
            self.log("calibration on validation: " + json.dumps(sidecar["calibration"]))
            models.save_model(built.model, self.run_dir / "model.keras", sidecar)
            self.log(f"saved {self.run_dir / 'model.keras'} (best epoch {recorder.best_epoch})")
            self._export_litert()

            if self.test_features is not None and not fine_tuned:
                # The backbone is unchanged, so the heads on cached features give the full
                # model's outputs; check that on one batch, then skip re-running the backbone.
                outputs = built.heads.predict(self.test_features, batch_size=512, verbose=0)
                test_ds, _ = pipeline.image_dataset(
                    splits["test"], scheme, c["image_size"], batch, training=False, cache="none", repeat=False
                )
                check = built.model.predict(test_ds.map(lambda x, y: x).take(1), verbose=0)
                gap = float(np.abs(check["age_bin"] - outputs["age_bin"][: len(check["age_bin"])]).max())
                if gap > 1e-3:
                    raise RuntimeError(
                        f"the assembled model disagrees with its trained heads (gap {gap:.2g})"
                    )
                raw = calibration.raw_predictions(outputs)
            else:
                raw = self._predict(built.model, splits["test"], scheme, batch)
            # One predictions builder for runs and `evaluate`: the same calibration and age clipping.
            predictions = evaluation.predictions_frame(
                splits["test"][["path", "age", "gender", "race"]].to_dict("records"),
                calibration.finalize(raw, scheme, sidecar["calibration"]),
                scheme,
                scheme,
            )
            atomic.write_parquet(self.run_dir / "predictions.parquet", predictions)
        finally:
            recorder.events.close()
            if disk_cache is not None:
                disk_cache.close()
        self.metrics.update(summary_metrics(predictions))
        self.metrics.update(
            best_val_loss=None if recorder.best_epoch == 0 else round(recorder.best_val_loss, 5),
            best_epoch=recorder.best_epoch,
            epochs_completed=len(recorder.history),
            stopped=self.stopper.requested,
            train_seconds=round(recorder.train_seconds, 1),
            duration_s=round(time.time() - started, 1),
            bins=scheme.spec,
        )
        if recorder.history:
            self.metrics["train_images_per_s"] = recorder.history[-1]["images_per_s"]
        atomic.write_json(self.run_dir / "metrics.json", self.metrics)
        self.log(
            "test: "
            + ", ".join(f"{k}={v}" for k, v in self.metrics.items() if k.startswith("test_"))
            + f"; {self.metrics['duration_s']}s in all"
        )

    def _export_litert(self) -> None:
        """``model.tflite`` beside ``model.keras`` (recorded in ``model.json``): predictions serve from it."""
        from agelab import litert

        start = time.perf_counter()
        try:
            twin = litert.export(self.run_dir / "model.keras")
        except Exception as exc:  # the Keras model still serves every prediction; the run goes on
            self.log(f"LiteRT export failed ({type(exc).__name__}: {exc}); the model is served by Keras")
            return
        self.log(f"exported {twin.name} for LiteRT serving in {time.perf_counter() - start:.0f} s")

    def _predict(self, model, frame: pd.DataFrame, scheme, batch: int) -> dict[str, np.ndarray]:
        """The model's raw predictions on ``frame``'s images, in order."""
        from agelab import calibration, pipeline

        ds, steps = pipeline.image_dataset(
            frame, scheme, self.config["image_size"], batch, training=False, cache="none", repeat=False
        )
        return calibration.raw_predictions(model.predict(ds.map(lambda x, y: x), steps=steps, verbose=0))

    def _fit(self, model, stage, images, recorder, snapshot, initial_epoch, epochs) -> int:
        import keras

        train_ds, steps = images("train")
        val_ds, val_steps = images("val")
        callbacks = [recorder.callback(stage, steps, snapshot)]
        if self.config["early_stopping"]:
            callbacks.append(
                keras.callbacks.EarlyStopping("val_loss", patience=self.config["early_stopping"])
            )
        model.fit(
            train_ds,
            steps_per_epoch=steps,
            validation_data=val_ds,
            validation_steps=val_steps,
            initial_epoch=initial_epoch,
            epochs=initial_epoch + epochs,
            callbacks=callbacks,
            verbose=0,
        )
        return initial_epoch + len([r for r in recorder.history if r["stage"] == stage])

    def _fast_stage(self, built, splits, train_frame, weights, recorder, batch) -> int:
        import keras

        from agelab import pipeline

        c = self.config
        if c["augment"]:
            self.log("fast mode: the cached features are unaugmented; augment applies to fine-tuning only")
        everything = pd.concat([train_frame, splits["val"], splits["test"]])
        key = {
            "model": c["model"],
            "alpha": f"a{c['alpha']:g}",
            "size": c["image_size"],
            "weights": c["weights"],
        }
        steps = -(-everything["path"].nunique() // 128)
        progress = FeatureProgress(self.run_dir, steps, self.stopper)
        start = time.time()
        features, from_cache = pipeline.cached_features(
            built.features, everything, c["image_size"], key, callbacks=[progress.callback]
        )
        seconds = time.time() - start
        self.metrics.update(feature_cache_hit=from_cache, feature_seconds=round(seconds, 1))
        self.log(
            f"features {features.shape} {'read from the cache' if from_cache else 'computed and cached'} "
            f"in {seconds:.1f}s"
        )
        if self.stopper.requested:
            raise RunStopped()
        scheme = _scheme(c)
        n_train, n_val = len(train_frame), len(splits["val"])
        train_x, val_x = features[:n_train], features[n_train : n_train + n_val]
        self.test_features = features[n_train + n_val :]
        train_ds, steps = pipeline.feature_dataset(
            train_x,
            pipeline.labels_of(train_frame, scheme),
            batch,
            training=True,
            weights=weights,
            seed=c["seed"],
        )
        val_ds, val_steps = pipeline.feature_dataset(
            val_x, pipeline.labels_of(splits["val"], scheme), batch, training=False
        )
        with self.strategy.scope():
            compile_model(built.heads, c["learning_rate"], c, steps * c["epochs"])
        callbacks = [recorder.callback("heads_fast", steps, built.model)]
        if c["early_stopping"]:
            callbacks.append(keras.callbacks.EarlyStopping("val_loss", patience=c["early_stopping"]))
        recorder.plan.stages[0] = ("heads_fast", c["epochs"], steps)
        built.heads.fit(
            train_ds,
            steps_per_epoch=steps,
            validation_data=val_ds,
            validation_steps=val_steps,
            epochs=c["epochs"],
            callbacks=callbacks,
            verbose=0,
        )
        return len(recorder.history)


def _scheme(config: dict[str, Any]):
    from agelab.bins import get_scheme

    return get_scheme(config["bins"])


def train(config: dict[str, Any], run_dir: Path | None = None) -> Path:
    """Train in this process; returns the run folder. Raises :class:`TrainingFailed` (after
    recording the traceback in ``status.json``) when the run crashes."""
    config = runs.resolve_data(build_config(base=config))
    run_dir = Path(run_dir) if run_dir else runs.create_run(config)
    stopper = StopRequest(run_dir)
    stopper.install()
    try:
        runs.remove_orphan_caches()
        device, gpus = describe_device()
        runs.write_status(
            run_dir,
            status="running",
            pid=os.getpid(),
            host=socket.gethostname(),
            started=time.time(),
            device=device,
        )
        print(f"run {run_dir} on {device}", flush=True)
        with runs.Heartbeat(run_dir):
            Trainer(config, run_dir, stopper, gpus).run()
        final = "stopped" if stopper.requested else "finished"
        runs.write_status(run_dir, status=final, ended=time.time())
        _say(f"run {final}")
    except BaseException as err:
        if stopper.requested and isinstance(err, RunStopped | InterruptedError):
            note = "stopped before the first epoch ended; no model saved"
            runs.write_status(run_dir, status="stopped", ended=time.time(), note=note)
            _say(f"run stopped: {note}")
            return run_dir
        reason = failure_reason(err, run_dir)
        trace = traceback.format_exc()
        # The status first: on a full disk the log (this process's stdout) cannot take the message.
        runs.write_status(run_dir, status="failed", ended=time.time(), error=reason or trace)
        _say(reason or trace, sys.stderr)
        if isinstance(err, KeyboardInterrupt):
            raise
        raise TrainingFailed(run_dir, reason or f"{type(err).__name__}: {err}") from err
    finally:
        stopper.uninstall()
    return run_dir


def _say(text: str, stream: TextIO | None = None) -> None:
    """Print, but never fail: the log may sit on a full disk."""
    try:
        print(text, file=stream or sys.stdout, flush=True)
    except (OSError, ValueError):
        pass


class _Tee:
    """Copies a stream into log.txt when the run was started by hand (not by ``runs.launch``)."""

    def __init__(self, stream: TextIO, log: TextIO) -> None:
        self.stream, self.log = stream, log

    def write(self, text: str) -> int:
        try:
            self.log.write(text)
            self.log.flush()
        except (OSError, ValueError):
            pass  # a full disk must not turn every print into a crash; the console still shows it
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()
        try:
            self.log.flush()
        except (OSError, ValueError):
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agelab train",
        description="Train a model. Keys (key=value):\n" + describe_options(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    parser.add_argument("--config", help="a YAML or JSON file of key: value (overrides still apply on top)")
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)  # a queued run made by runs.launch
    args = parser.parse_args(argv)
    try:
        if args.run_dir:
            run_dir = Path(args.run_dir)
            config = build_config(base=atomic.read_json(run_dir / "config.json", {}))
        else:
            base = load_config_file(args.config) if args.config else {}
            config = runs.resolve_data(build_config(parse_overrides(args.overrides), base=base))
            run_dir = None
    except ConfigError as err:
        print(f"agelab train: {err}", file=sys.stderr)
        return 2
    if not Path(config["data"] or ".").is_dir():
        print(f"agelab train: data folder {config['data']!r} does not exist", file=sys.stderr)
        return 2
    from agelab.data import has_images

    if not has_images(config["data"]):
        print(
            f"agelab train: data folder {config['data']!r} holds no well-named UTKFace image", file=sys.stderr
        )
        return 2
    try:
        run_dir = run_dir or runs.create_run(config)
    except OSError as err:
        print(
            f"agelab train: cannot create a run folder under {runs.runs_dir()}: {err.strerror or err}",
            file=sys.stderr,
        )
        return 1
    log = None
    if not os.environ.get("AGELAB_LOG_REDIRECTED"):
        log = open(run_dir / "log.txt", "a", encoding="utf-8")
        sys.stdout, sys.stderr = _Tee(sys.stdout, log), _Tee(sys.stderr, log)
    try:
        train(config, run_dir)
        code = 0 if runs.effective_status(run_dir).get("status") == "finished" else 3
    except TrainingFailed as err:
        print(f"agelab train: the run failed: {err}", file=sys.stderr)
        code = 1
    finally:
        if log is not None:
            sys.stdout, sys.stderr = sys.stdout.stream, sys.stderr.stream
            log.close()
    print(run_dir, flush=True)
    return code
