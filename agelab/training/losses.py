"""The age-bin loss: cross-entropy against one-hot targets, or against soft ordinal targets that
give the neighbouring bins part of the mass (``soft_bins``; SORD, Diaz and Marathe, CVPR 2019).

Why soft targets: the age groups are ordinal and UTKFace's ages are noisy near the groups' edges
(Mature Adult 35-44 is exactly right for a third of its faces, within one group for 95 %). One-hot
targets punish "one group off" as hard as "five groups off", and the bin head over-fits them after
about 30 epochs (docs/recipes.md).
"""

from __future__ import annotations

from agelab.custom_objects import SoftOrdinalCrossentropy, soft_bin_targets  # noqa: F401  (their home)

import keras  # noqa: E402  isort: skip  (after agelab, which sets KERAS_HOME)


def age_bin_loss(num_bins: int, sigma: float) -> keras.losses.Loss:
    """The bin head's loss: sparse cross-entropy when ``sigma`` is 0, soft ordinal otherwise."""
    if sigma <= 0:
        return keras.losses.SparseCategoricalCrossentropy()
    return SoftOrdinalCrossentropy(num_bins, sigma)
