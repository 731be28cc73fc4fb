"""Every Keras object agelab saves inside a model: one layer, the losses and the metric functions.

They are registered with Keras under ``agelab>Name``, the name a saved ``.keras`` file refers to them
by, and :data:`CUSTOM_OBJECTS` lists them for ``keras.saving.load_model``. This module imports nothing
of agelab above it, so loading a model needs no training or ensemble import. The training modules
that use them (:mod:`agelab.training.losses`, :mod:`agelab.training.intervals`,
:mod:`agelab.training.distill`) and :mod:`agelab.ensemble` import them from here.
"""

from __future__ import annotations

import numpy as np

import agelab  # noqa: F401  (sets KERAS_HOME before keras is imported)

import keras  # noqa: E402  isort: skip


@keras.saving.register_keras_serializable(package="agelab")
class MirrorImages(keras.layers.Layer):
    """Images flipped left to right (a batch of ``(N, H, W, C)``): an ensemble's mirror view."""

    def call(self, images):
        return keras.ops.flip(images, axis=2)


# --------------------------------------------------------------------------- the age-bin loss


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


# --------------------------------------------------------------------------- age ranges as labels


@keras.saving.register_keras_serializable(package="agelab")
class BinSetCrossentropy(keras.losses.Loss):
    """``-log`` of the probability the head gives the bins of the labelled range (``y_true[:, 1:]``)."""

    def call(self, y_true, y_pred):
        from keras import ops

        inside = ops.sum(y_true[:, 1:] * y_pred, axis=-1)
        return -ops.log(ops.clip(inside, keras.config.epsilon(), 1.0))


@keras.saving.register_keras_serializable(package="agelab")
class IntervalAbsoluteError(keras.losses.Loss):
    """The years head's distance to the labelled range ``[y_true[:, 0], y_true[:, 1]]``."""

    def call(self, y_true, y_pred):
        from keras import ops

        predicted = y_pred[:, 0]
        return ops.abs(predicted - ops.clip(predicted, y_true[:, 0], y_true[:, 1]))


@keras.saving.register_keras_serializable(package="agelab")
def bin_in_range(y_true, y_pred):
    """1 where the most likely bin is one the labelled range overlaps."""
    from keras import ops

    chosen = ops.one_hot(ops.argmax(y_pred, axis=-1), ops.shape(y_pred)[-1])
    return ops.sum(chosen * y_true[:, 1:], axis=-1)


@keras.saving.register_keras_serializable(package="agelab")
def years_outside_range(y_true, y_pred):
    from keras import ops

    predicted = y_pred[:, 0]
    return ops.abs(predicted - ops.clip(predicted, y_true[:, 0], y_true[:, 1]))


# --------------------------------------------------------------------------- packed targets


@keras.saving.register_keras_serializable(package="agelab")
class PackedCrossentropy(keras.losses.Loss):
    """Cross-entropy of the bin probabilities against the packed target distribution ``y_true[:, 1:]``."""

    def call(self, y_true, y_pred):
        from keras import ops

        probabilities = ops.clip(y_pred, keras.config.epsilon(), 1.0)
        return -ops.sum(y_true[:, 1:] * ops.log(probabilities), axis=-1)


@keras.saving.register_keras_serializable(package="agelab")
class PackedBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy of the gender probability against the packed target ``y_true[:, 1:]``."""

    def call(self, y_true, y_pred):
        return keras.losses.binary_crossentropy(y_true[:, 1:], y_pred)


@keras.saving.register_keras_serializable(package="agelab")
def packed_bin_accuracy(y_true, y_pred):
    return keras.metrics.sparse_categorical_accuracy(y_true[:, :1], y_pred)


@keras.saving.register_keras_serializable(package="agelab")
def packed_gender_accuracy(y_true, y_pred):
    return keras.metrics.binary_accuracy(y_true[:, :1], y_pred)


# What ``keras.saving.load_model`` is given, by the names saved files use.
CUSTOM_OBJECTS = {
    f"agelab>{obj.__name__}": obj
    for obj in (
        MirrorImages,
        SoftOrdinalCrossentropy,
        BinSetCrossentropy,
        IntervalAbsoluteError,
        bin_in_range,
        years_outside_range,
        PackedCrossentropy,
        PackedBinaryCrossentropy,
        packed_bin_accuracy,
        packed_gender_accuracy,
    )
}
