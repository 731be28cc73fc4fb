"""One training run, top to bottom: seed, data, strategy and model, the stage plan, the stages, then
the kept weights saved with their calibration, and the test predictions and metrics."""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from pathlib import Path
from typing import Any

from agelab import atomic, models, pipeline
from agelab.bins import BinScheme, get_scheme
from agelab.determinism import seed_run
from agelab.model_files import save_model
from agelab.training import checkpoints, distill
from agelab.training import run_scores as scoring
from agelab.training.callbacks import StagePlace, stage_callbacks
from agelab.training.checkpoints import Checkpoint
from agelab.training.datasets import ImageDatasets
from agelab.training.devices import make_strategy
from agelab.training.errors import StopAtBatch
from agelab.training.features import Features, extract_features
from agelab.training.plan import Plan
from agelab.training.recorder import RunRecorder
from agelab.training.splits import RunData, prepare_data
from agelab.training.stages import FineTune, HeadsOnFeatures, ImageStage, Stage
from agelab.training.stop import StopRequest

import keras  # noqa: E402  isort: skip  (after agelab, which sets KERAS_HOME)


# Scoring a test image (decode, detect, align, the LiteRT twin) against validating one in fit(), measured
# on this CPU: about three times the time.
SCORING_PER_VALIDATION = 3.0


def finish_passes(data: RunData) -> float:
    """The work after the last batch in validation passes: calibration (one), then the test split."""
    n_val, n_test = len(data.splits["val"]), len(data.splits["test"])
    return 1.0 + SCORING_PER_VALIDATION * n_test / max(n_val, 1)


class Trainer:
    """Trains ``config`` into ``run_dir``: ``model.keras`` (with its sidecar and LiteRT twin),
    ``predictions.parquet``, ``metrics.json``, and as it goes ``progress.json`` and ``history.csv``."""

    def __init__(
        self,
        config: dict[str, Any],
        run_dir: Path,
        stopper: StopRequest,
        gpus: list[Any],
        resume: Checkpoint | None = None,
    ) -> None:
        self.config = config
        self.run_dir = run_dir
        self.stopper = stopper
        self.gpus = gpus
        # The checkpoint a resumed run goes on from (``train resume=RUN``); None for a new run.
        self.resume = resume
        self.metrics: dict[str, Any] = {}

    def log(self, message: str) -> None:
        print(message, flush=True)

    def run(self) -> None:
        c = self.config
        started = time.time()
        self.set_up()
        scheme = get_scheme(c["bins"])
        data = self.load_data(scheme)
        self.metrics["data_seconds"] = round(time.time() - started, 2)
        strategy, built, batch = self.build_model(scheme)

        with ImageDatasets(data, scheme, c, batch, pipeline.Augmentation.from_config(c)) as images:
            # Fast mode runs the frozen backbone once, here.
            features = self.cache_features(built, data) if c["fast"] else None
            # The plan: every stage and its size, fixed before the first one starts.
            stages = self.plan_stages(built, data, scheme, features, images, batch, strategy)
            recorder = RunRecorder(self.run_dir, Plan.of(stages), batch)
            recorder.finish_passes = finish_passes(data)
            if self.resume is not None:
                self.restore(built.model, recorder)
            try:
                self.fit_stages(stages, recorder, built.model)
                finishing = time.time()
                kept_epoch = recorder.keep_weights(built.model, c["keep"])
                self.save(built, data, scheme, batch, recorder.best_epoch, kept_epoch)
                self._export_litert()
                test_metrics = self.score_test(data)
                # What the ETA said the end would take, against what it took: the estimate's record.
                self.metrics["finish_estimate_s"] = round(recorder.finish_estimate(), 1)
                self.metrics["finish_seconds"] = round(time.time() - finishing, 1)
            finally:
                recorder.events.close()
        self.write_metrics(test_metrics, recorder, scheme, started)

    def set_up(self) -> None:
        """The seed, and half precision where it pays (a GPU)."""
        c = self.config
        # Our datasets shuffle themselves; fit() warns about its own shuffle flag otherwise.
        warnings.filterwarnings("ignore", message=".*`shuffle=True` was passed.*")
        seed_run(c["seed"], c.get("deterministic", True))
        if c["mixed_precision"]:
            if self.gpus:
                keras.mixed_precision.set_global_policy("mixed_float16")
            else:
                self.log("mixed_precision=true is ignored: no GPU")

    def load_data(self, scheme: BinScheme) -> RunData:
        """The run's splits, counted in its metrics."""
        data = prepare_data(self.config, scheme, self.log)
        if self.config["teacher"]:
            data.train = distill.teacher_predictions(self.config["teacher"], data.train, scheme, self.log)
        if data.n_excluded is not None:
            self.metrics["n_excluded"] = data.n_excluded
        self.metrics.update(n_train=len(data.train), n_val=len(data.splits["val"]), n_images=len(data.frame))
        return data

    def build_model(self, scheme: BinScheme) -> tuple[Any, models.BuiltModel, int]:
        """The strategy, the model built in its scope, and the global batch (``batch_size`` is per replica)."""
        c = self.config
        strategy = make_strategy(self.gpus)
        with strategy.scope():
            built = models.create_from_config(c, scheme.num_bins)
        self.log(f"model {c['model']}: {built.model.count_params():,} parameters")
        replicas = max(1, strategy.num_replicas_in_sync)
        batch = c["batch_size"] * replicas
        self.metrics.update(replicas=replicas, global_batch=batch)
        if replicas > 1:
            self.log(f"{type(strategy).__name__}: {replicas} replicas, global batch {batch}")
        return strategy, built, batch

    def cache_features(self, built: models.BuiltModel, data: RunData) -> Features:
        features = extract_features(built.features, data, self.config, self.run_dir, self.stopper, self.log)
        self.metrics.update(feature_cache_hit=features.from_cache, feature_seconds=round(features.seconds, 1))
        return features

    def restore(self, model: Any, recorder: RunRecorder) -> None:
        """The model's variables and the record as the resumed checkpoint left them."""
        ckpt = self.resume
        assert ckpt is not None
        checkpoints.restore_model(model, ckpt.model)
        best = ckpt.best
        if best is None and ckpt.state["recorder"]["best_epoch"] == ckpt.epoch:
            best = model.get_weights()  # the best epoch was the checkpoint's own
        recorder.restore(ckpt.state["recorder"], best)
        self.metrics["resumed_from_epoch"] = ckpt.epoch
        self.log(f"resumed from {ckpt.path.name}: {ckpt.epoch} epochs done, {ckpt.state['stage']} stage")

    def fit_stages(self, stages: list[Stage], recorder: RunRecorder, full_model: Any) -> None:
        """Each stage in turn until a stop request. Epochs count on across stages. A resumed run skips
        the stages its checkpoint finished and goes on inside the one it was in."""
        ckpt = self.resume.state if self.resume is not None else None
        for index, stage in enumerate(stages):
            if self.stopper.requested:
                break
            start, goes_on_from, earlier_stop = len(recorder.history), None, None
            if ckpt is not None and index <= ckpt["stage_index"]:
                done = ckpt["epoch"] - ckpt["stage_start"]
                if index < ckpt["stage_index"] or ckpt["stage_done"] or done >= stage.epochs:
                    continue
                start, goes_on_from = ckpt["stage_start"], ckpt["epoch"]
                earlier_stop = ckpt["early_stopping"]
            callbacks = stage_callbacks(
                recorder,
                stage.name,
                stage.steps,
                full_model,
                self.stopper,
                self.config,
                StagePlace(index, start),
                earlier_stop,
            )
            resume = None if goes_on_from is None else (goes_on_from, self.resume.optimizer)  # type: ignore[union-attr]
            try:
                stage.fit(callbacks, initial_epoch=start, resume=resume)
            except StopAtBatch:
                # The cut-short epoch is not an epoch: it is counted apart, never in the history.
                done = recorder.steps_done - sum(row.get("steps", 0) for row in recorder.history)
                self.metrics["partial_epoch"] = {"stage": stage.name, "batches": done, "of": stage.steps}
                self.log(
                    f"stopped after batch {done} of {stage.steps} of epoch {len(recorder.history) + 1}: "
                    "that partial epoch is not recorded"
                )
                break

    def score_test(self, data: RunData) -> dict[str, float]:
        """``predictions.parquet`` of the test split, made from the saved model by ``evaluate``'s path
        (in every mode: fast mode's cached features are not the model evaluate loads); its metrics."""
        predictions, metrics, served = scoring.scored_test_split(
            self.run_dir / "model.keras", data.splits["test"]
        )
        atomic.write_parquet(self.run_dir / "predictions.parquet", predictions)
        self.log(f"test split scored as evaluate scores it, {served}")
        if data.disputed:
            kept = ~predictions["path"].astype(str).isin(data.disputed)
            self.metrics["disputed"] = {
                "n": int((~kept).sum()),
                "without_them": scoring.run_metrics(
                    predictions[kept].reset_index(drop=True), self.config["bins"]
                ),
            }
        # The test set's identity, so that runs scored on different images are never compared as alike.
        md5s = "\n".join(sorted(data.splits["test"]["md5"].astype(str)))
        self.metrics["scored_on"] = hashlib.sha1(md5s.encode()).hexdigest()[:12]
        by_source = scoring.metrics_by_source(predictions, data.splits["test"], self.config["bins"])
        if len(by_source) > 1:
            self.metrics["sources"] = by_source
            for name, numbers in by_source.items():
                self.log(f"test, {name}: " + ", ".join(f"{k}={v}" for k, v in numbers.items()))
        return metrics

    def write_metrics(
        self, test_metrics: dict[str, float], recorder: RunRecorder, scheme: BinScheme, started: float
    ) -> None:
        self.metrics.update(test_metrics)
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

    def plan_stages(
        self,
        built: models.BuiltModel,
        data: RunData,
        scheme: BinScheme,
        features: Features | None,
        images: ImageDatasets,
        batch: int,
        strategy: Any,
    ) -> list[Stage]:
        """The heads on cached features (fast), else the model on images (``heads`` over a frozen
        backbone, ``train`` without one); then fine-tuning when the config asks for it."""
        c = self.config
        # What image_dataset and feature_dataset count per epoch: the plan's steps are the stages' own.
        steps = -(-len(data.train) // batch)
        common = {"steps": steps, "config": c, "strategy": strategy, "ranges": data.ranges}
        first: Stage
        if features is not None:
            train, _ = pipeline.feature_dataset(
                features.train,
                distill.training_labels(data.train, scheme, c, data.ranges),
                batch,
                training=True,
                weights=data.weights,
                seed=c["seed"],
            )
            val, val_steps = pipeline.feature_dataset(
                features.val,
                distill.training_labels(data.splits["val"], scheme, c, data.ranges),
                batch,
                training=False,
            )
            first = HeadsOnFeatures(
                name="heads_fast",
                model=built.heads,
                epochs=c["epochs"],
                learning_rate=c["learning_rate"],
                train=train,
                val=val,
                val_steps=val_steps,
                **common,
            )
        else:
            first = ImageStage(
                name="heads" if built.backbone is not None else "train",
                model=built.model,
                epochs=c["epochs"],
                learning_rate=c["learning_rate"],
                images=images,
                **common,
            )
        stages = [first]
        if built.backbone is not None and c["fine_tune_layers"] and c["fine_tune_epochs"]:
            stages.append(
                FineTune(
                    name="fine_tune",
                    model=built.model,
                    epochs=c["fine_tune_epochs"],
                    learning_rate=c["fine_tune_learning_rate"],
                    images=images,
                    backbone=built.backbone,
                    layers=c["fine_tune_layers"],
                    log=self.log,
                    **common,
                )
            )
        return stages

    def save(
        self,
        built: models.BuiltModel,
        data: RunData,
        scheme: BinScheme,
        batch: int,
        best_epoch: int,
        kept_epoch: int,
    ) -> None:
        """``model.keras`` and its sidecar, with temperatures fitted on the validation split (so that
        its confidence means something)."""
        from agelab import calibration

        c = self.config
        sidecar = {
            "bins": scheme.spec,
            "bin_labels": scheme.labels,
            "image_size": c["image_size"],
            "model": c["model"],
            "alpha": c["alpha"],
            "age_head": c["age_head"],
            "run": self.run_dir.name,
            "best_epoch": best_epoch,
            "kept_epoch": kept_epoch,
            "crop": c["crop"],
        }
        val = data.splits["val"]
        val_outputs = scoring.raw_outputs(built.model, val, scheme, c["image_size"], batch)
        sidecar["calibration"] = calibration.calibrate(
            val_outputs["age_bin"],
            scheme.bin_of(val["age"].to_numpy()),
            val_outputs["prob_female"],
            val["gender"].to_numpy() == 1,
        )
        self.log("calibration on validation: " + json.dumps(sidecar["calibration"]))
        save_model(built.model, self.run_dir / "model.keras", sidecar)
        self.log(f"saved {self.run_dir / 'model.keras'} (best epoch {best_epoch})")

    def _export_litert(self) -> None:
        """``model.tflite`` beside ``model.keras`` (recorded in ``model.json``): predictions serve from it."""
        from agelab import litert_export as litert

        start = time.perf_counter()
        try:
            twin = litert.export(self.run_dir / "model.keras")
        except Exception as exc:  # the Keras model still serves every prediction; the run goes on
            self.log(f"LiteRT export failed ({type(exc).__name__}: {exc}); the model is served by Keras")
            return
        self.log(f"exported {twin.name} for LiteRT serving in {time.perf_counter() - start:.0f} s")
