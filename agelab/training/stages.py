"""The stages of a run, each one ``compile()`` + ``fit()`` of one model:

- :class:`HeadsOnFeatures` (fast mode): the heads alone, on the frozen backbone's cached features;
- :class:`ImageStage`: the full model on images, the heads over a frozen backbone (``heads``) or a
  model without one (``train``);
- :class:`FineTune`: the full model again, with the backbone's top layers unfrozen.

A stage knows its name, epochs and steps before it starts (the run's plan is made of them), and
changes nothing but its own model's weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agelab import models
from agelab.bins import get_scheme
from agelab.training import distill, intervals
from agelab.training.checkpoints import restore_optimizer
from agelab.training.datasets import ImageDatasets
from agelab.training.losses import age_bin_loss

import keras  # noqa: E402  isort: skip  (after agelab, which sets KERAS_HOME)


def compile_model(
    model: Any, learning_rate: float, config: dict[str, Any], total_steps: int = 0, ranges: bool = False
) -> None:
    """Compile with the multi-task losses (interval ones when ``ranges``); ``lr_schedule=cosine`` decays
    over ``total_steps``."""
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
    if ranges:
        loss, metrics = intervals.losses_and_metrics()
    elif distill.uses_packed_targets(config):
        loss, metrics = distill.losses_and_metrics()
    else:
        loss = {
            "age_bin": age_bin_loss(get_scheme(config["bins"]).num_bins, config.get("soft_bins", 0.0)),
            "age": keras.losses.MeanAbsoluteError(),
            "gender": keras.losses.BinaryCrossentropy(),
        }
        metrics = {
            "age_bin": [keras.metrics.SparseCategoricalAccuracy(name="acc")],
            "age": [keras.metrics.MeanAbsoluteError(name="mae")],
            "gender": [keras.metrics.BinaryAccuracy(name="acc")],
        }
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=loss,
        loss_weights={
            "age_bin": config["loss_weight_age_bin"],
            "age": config["loss_weight_age"],
            "gender": config["loss_weight_gender"],
        },
        metrics=metrics,
        jit_compile=False,  # XLA measured 3-8x slower on this CPU
    )


@dataclass(kw_only=True)
class Stage:
    """``model`` trained for ``epochs`` of ``steps`` batches at ``learning_rate``, compiled in
    ``strategy``'s scope (so its optimizer's variables are mirrored like the model's)."""

    name: str
    model: Any
    epochs: int
    steps: int
    learning_rate: float
    config: dict[str, Any]
    strategy: Any
    ranges: bool = False

    def compile(self) -> None:
        with self.strategy.scope():
            compile_model(self.model, self.learning_rate, self.config, self.steps * self.epochs, self.ranges)

    def datasets(self) -> tuple[Any, Any, int]:
        """``(train, val, val_steps)``: both repeat, and are read ``steps`` / ``val_steps`` at a time."""
        raise NotImplementedError

    def fit(
        self, callbacks: list[Any], initial_epoch: int = 0, resume: tuple[int, list[Any]] | None = None
    ) -> None:
        """Train after the ``initial_epoch`` epochs of the stages before (epochs count on across stages).

        ``resume``: ``(epoch, optimizer values)`` of a checkpoint inside this stage: the optimizer is
        loaded (its step count carries the learning-rate schedule on) and the batches of the stage's
        finished epochs are skipped, so the next epoch reads the batches it would have read."""
        self.compile()
        train, val, val_steps = self.datasets()
        first = initial_epoch
        if resume is not None:
            first, optimizer_state = resume
            with self.strategy.scope():
                restore_optimizer(self.model, optimizer_state)
            train = train.skip((first - initial_epoch) * self.steps)
        self.model.fit(
            train,
            steps_per_epoch=self.steps,
            validation_data=val,
            validation_steps=val_steps,
            initial_epoch=first,
            epochs=initial_epoch + self.epochs,
            callbacks=callbacks,
            verbose=0,
        )


@dataclass(kw_only=True)
class HeadsOnFeatures(Stage):
    """Fast mode: the heads on cached backbone features; ``train`` and ``val`` are feature datasets."""

    train: Any
    val: Any
    val_steps: int

    def datasets(self) -> tuple[Any, Any, int]:
        return self.train, self.val, self.val_steps


@dataclass(kw_only=True)
class ImageStage(Stage):
    """The full model on the run's image datasets (made on first use)."""

    images: ImageDatasets

    def datasets(self) -> tuple[Any, Any, int]:
        train, _ = self.images("train")
        val, val_steps = self.images("val")
        return train, val, val_steps


@dataclass(kw_only=True)
class FineTune(ImageStage):
    """The full model with the backbone's top ``layers`` unfrozen (BatchNormalization stays frozen)."""

    backbone: Any
    layers: int
    log: Callable[[str], None] = print

    def compile(self) -> None:
        opened = models.unfreeze_top(self.backbone, self.layers)
        self.log(f"fine-tuning the top {self.layers} backbone layers ({opened} with weights)")
        super().compile()
