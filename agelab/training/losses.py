"""The age-bin loss: cross-entropy against one-hot targets, or against soft ordinal targets that
give the neighbouring bins part of the mass (``soft_bins``; SORD, Diaz and Marathe, CVPR 2019).

Why soft targets: the age groups are ordinal and UTKFace's ages are noisy near the groups' edges
(Mature Adult 35-44 is exactly right for a third of its faces, within one group for 95 %). One-hot
targets punish "one group off" as hard as "five groups off", and the bin head over-fits them after
about 30 epochs (docs/recipes.md).
"""

from __future__ import annotations

import numpy as np

import keras  # noqa: E402  isort: skip  (after agelab, which sets KERAS_HOME)


def soft_bin_targets(num_bins: int, sigma: float) -> np.ndarray:
    """Row ``t`` is the target distribution of a face in bin ``t``: weights ``exp(-d^2 / 2 sigma^2)``
    of the rank distance ``d``, normalised. ``sigma=0`` gives the one-hot rows."""
    ranks = np.arange(num_bins)
    if sigma <= 0:
        return np.eye(num_bins, dtype="float32")
    weights = np.exp(-((ranks[:, None] - ranks[None, :]) ** 2) / (2 * sigma**2))
    return (weights / weights.sum(axis=1, keepdims=True)).astype("float32")


@keras.saving.register_keras_serializable(package="agelab")
class SoftOrdinalCrossentropy(keras.losses.Loss):
    """Cross-entropy of bin probabilities against :func:`soft_bin_targets`, from sparse bin labels,
    so the datasets and the accuracy metric keep their integer labels."""

    def __init__(self, num_bins: int, sigma: float, name: str = "soft_ordinal_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_bins = num_bins
        self.sigma = sigma
        self._targets = soft_bin_targets(num_bins, sigma)

    def call(self, y_true, y_pred):
        from keras import ops

        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        targets = ops.take(ops.convert_to_tensor(self._targets), labels, axis=0)
        probabilities = ops.clip(y_pred, keras.config.epsilon(), 1.0)
        return -ops.sum(targets * ops.log(probabilities), axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "num_bins": self.num_bins, "sigma": self.sigma}


def age_bin_loss(num_bins: int, sigma: float) -> keras.losses.Loss:
    """The bin head's loss: sparse cross-entropy when ``sigma`` is 0, soft ordinal otherwise."""
    if sigma <= 0:
        return keras.losses.SparseCategoricalCrossentropy()
    return SoftOrdinalCrossentropy(num_bins, sigma)
