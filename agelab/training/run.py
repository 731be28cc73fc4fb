"""One training run, top to bottom: seed, data, strategy and model, the stage plan, the stages, then
the kept weights saved with their calibration, and the test predictions and metrics."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

from agelab import atomic, models, pipeline
from agelab.bins import get_scheme
from agelab.training import scoring
from agelab.training.callbacks import stage_callbacks
from agelab.training.datasets import ImageDatasets
from agelab.training.devices import make_strategy
from agelab.training.features import Features, extract_features
from agelab.training.plan import Plan
from agelab.training.recorder import RunRecorder
from agelab.training.splits import RunData, prepare_data
from agelab.training.stages import FineTune, HeadsOnFeatures, ImageStage, Stage
from agelab.training.stop import StopRequest

import keras  # noqa: E402  isort: skip  (after agelab, which sets KERAS_HOME)


class Trainer:
    """Trains ``config`` into ``run_dir``: ``model.keras`` (with its sidecar and LiteRT twin),
    ``predictions.parquet``, ``metrics.json``, and as it goes ``progress.json`` and ``history.csv``."""

    def __init__(self, config: dict[str, Any], run_dir: Path, stopper: StopRequest, gpus: list[Any]) -> None:
        self.config = config
        self.run_dir = run_dir
        self.stopper = stopper
        self.gpus = gpus
        self.metrics: dict[str, Any] = {}

    def log(self, message: str) -> None:
        print(message, flush=True)

    def run(self) -> None:
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

        # The data: split, and the train split rebalanced.
        data = prepare_data(c, scheme, self.log)
        if data.n_excluded is not None:
            self.metrics["n_excluded"] = data.n_excluded
        self.metrics.update(n_train=len(data.train), n_val=len(data.splits["val"]), n_images=len(data.frame))
        self.metrics["data_seconds"] = round(time.time() - started, 2)

        # The model, built in the strategy's scope; batch_size is per replica.
        strategy = make_strategy(self.gpus)
        with strategy.scope():
            built = models.create_from_config(c, scheme.num_bins)
        self.log(f"model {c['model']}: {built.model.count_params():,} parameters")
        replicas = max(1, strategy.num_replicas_in_sync)
        batch = c["batch_size"] * replicas
        self.metrics.update(replicas=replicas, global_batch=batch)
        if replicas > 1:
            self.log(f"{type(strategy).__name__}: {replicas} replicas, global batch {batch}")

        with ImageDatasets(data, scheme, c, batch, pipeline.Augmentation.from_config(c)) as images:
            # Fast mode runs the frozen backbone once, here; its test features serve the test predictions.
            features = None
            if c["fast"]:
                features = extract_features(built.features, data, c, self.run_dir, self.stopper, self.log)
                self.metrics.update(
                    feature_cache_hit=features.from_cache, feature_seconds=round(features.seconds, 1)
                )

            # The plan: every stage and its size, fixed before the first one starts.
            stages = self.plan_stages(built, data, scheme, features, images, batch, strategy)
            recorder = RunRecorder(self.run_dir, Plan.of(stages), batch)
            try:
                trained = []
                for stage in stages:
                    if self.stopper.requested:
                        break
                    callbacks = stage_callbacks(
                        recorder, stage.name, stage.steps, built.model, self.stopper, c["early_stopping"]
                    )
                    stage.fit(callbacks, initial_epoch=len(recorder.history))
                    trained.append(stage.name)
                kept_epoch = recorder.keep_weights(built.model, c["keep"])
                calibration = self.save(built, data, scheme, batch, recorder.best_epoch, kept_epoch)
                self._export_litert()

                # The test split, scored as `evaluate` scores it.
                if features is not None and "fine_tune" not in trained:
                    raw = scoring.heads_outputs(
                        built, features.test, data.splits["test"], scheme, c["image_size"], batch
                    )
                else:
                    raw = scoring.raw_outputs(
                        built.model, data.splits["test"], scheme, c["image_size"], batch
                    )
                predictions, test_metrics = scoring.scored(data.splits["test"], raw, scheme, calibration)
                atomic.write_parquet(self.run_dir / "predictions.parquet", predictions)
            finally:
                recorder.events.close()

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
        scheme: Any,
        features: Features | None,
        images: ImageDatasets,
        batch: int,
        strategy: Any,
    ) -> list[Stage]:
        """The heads on cached features (fast), else the model on images (``heads`` over a frozen
        backbone, ``train`` without one); then fine-tuning when the config asks for it."""
        c = self.config
        steps = -(-len(data.train) // batch)  # what image_dataset and feature_dataset count per epoch
        first: Stage
        if features is not None:
            train, _ = pipeline.feature_dataset(
                features.train, pipeline.labels_of(data.train, scheme), batch, training=True,
                weights=data.weights, seed=c["seed"],
            )  # fmt: skip
            val, val_steps = pipeline.feature_dataset(
                features.val, pipeline.labels_of(data.splits["val"], scheme), batch, training=False
            )
            first = HeadsOnFeatures(
                "heads_fast", built.heads, c["epochs"], steps, c["learning_rate"], c, strategy,
                train=train, val=val, val_steps=val_steps,
            )  # fmt: skip
        else:
            name = "heads" if built.backbone is not None else "train"
            first = ImageStage(
                name, built.model, c["epochs"], steps, c["learning_rate"], c, strategy, images=images
            )
        stages = [first]
        if built.backbone is not None and c["fine_tune_layers"] and c["fine_tune_epochs"]:
            stages.append(
                FineTune(
                    "fine_tune",
                    built.model,
                    c["fine_tune_epochs"],
                    steps,
                    c["fine_tune_learning_rate"],
                    c,
                    strategy,
                    images=images,
                    backbone=built.backbone,
                    layers=c["fine_tune_layers"],
                    log=self.log,
                )  # fmt: skip
            )
        return stages

    def save(
        self,
        built: models.BuiltModel,
        data: RunData,
        scheme: Any,
        batch: int,
        best_epoch: int,
        kept_epoch: int,
    ) -> dict[str, Any]:
        """``model.keras`` and its sidecar, with temperatures fitted on the validation split (so that
        its confidence means something); returns that calibration."""
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
        models.save_model(built.model, self.run_dir / "model.keras", sidecar)
        self.log(f"saved {self.run_dir / 'model.keras'} (best epoch {best_epoch})")
        return sidecar["calibration"]

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
