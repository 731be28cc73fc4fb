"""The image datasets of a run's splits, made on first use, in memory or in a private disk cache
that is removed when the run ends."""

from __future__ import annotations

from typing import Any

from agelab.bins import BinScheme
from agelab.training import mixup
from agelab.training.distill import training_labels
from agelab.training.splits import RunData


class ImageDatasets:
    """``datasets("train")`` -> ``(dataset, steps)``: augmented, shuffled and weighted for train,
    plain for val and test. A context manager: leaving it removes the disk cache, if one was made."""

    def __init__(
        self, data: RunData, scheme: BinScheme, config: dict[str, Any], batch_size: int, augmentation: Any
    ) -> None:
        self.data = data
        self.scheme = scheme
        self.config = config
        self.batch_size = batch_size
        self.augmentation = augmentation
        self._made: dict[str, tuple[Any, int]] = {}
        self._disk: Any = None

    def __call__(self, split: str) -> tuple[Any, int]:
        from agelab import pipeline

        if split not in self._made:
            c = self.config
            images = len(self.data.frame) + len(self.data.train)
            cache = "memory"
            if pipeline.choose_cache(c["cache"], images, c["image_size"]) == "disk":
                self._disk = self._disk or pipeline.DiskCache()
                cache = self._disk.file(split)
            training = split == "train"
            self._made[split] = pipeline.image_dataset(
                self.data.source(split),
                self.scheme,
                c["image_size"],
                self.batch_size,
                training=training,
                augmentation=self.augmentation,
                cache=cache,
                weights=self.data.weights if training else None,
                seed=c["seed"],
                labels=lambda frame: training_labels(frame, self.scheme, c, self.data.ranges),
                mix=mixup.mixer(c["mixup"], c["seed"] + 11) if training and mixup.enabled(c) else None,
            )
        return self._made[split]

    def __enter__(self) -> ImageDatasets:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._disk is not None:
            self._disk.close()
