"""Mixup (Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018): each training face
is blended with another face of its batch, and its targets with that face's targets, in the same
proportion.

Why: the bin head over-fits UTKFace's crops after about 30 epochs (docs/recipes.md), and a model
that has only seen whole, clean faces is over-confident on the photos users give it. Blended faces
and targets teach it to be as unsure between two faces as the blend is.

The targets are the packed ones of :mod:`agelab.training.distill` (label column, then target
columns): a mixup run trains on those, so the blend touches only the target columns and the label
column stays the face's own for the accuracy metrics. Each face keeps the larger share of its blend
(``max(lambda, 1 - lambda)``), so its own label is the one the blend mostly shows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf


def enabled(config: dict[str, Any]) -> bool:
    """Whether a run mixes its training batches (``mixup`` > 0; configs saved before the key: no)."""
    return config.get("mixup", 0.0) > 0


def blend_shares(count: tf.Tensor, alpha: float, seed: int = 0) -> tf.Tensor:
    """``count`` shares in [0.5, 1], each ``max(l, 1 - l)`` for ``l ~ Beta(alpha, alpha)``."""
    a = tf.random.gamma([count], alpha, seed=seed)
    b = tf.random.gamma([count], alpha, seed=seed + 1)
    # Both draws can underflow to 0 for a small alpha: the face then stays whole (share 1).
    share = tf.math.divide_no_nan(a, a + b)
    return tf.maximum(share, 1.0 - share)


def mix_batch(
    images: tf.Tensor,
    labels: dict[str, tf.Tensor],
    weights: tf.Tensor | None = None,
    *,
    alpha: float,
    seed: int = 0,
) -> tuple[Any, ...]:
    """One training batch blended with a shuffled copy of itself: ``(images, labels[, weights])``.

    ``labels`` are packed: ``age_bin`` and ``gender`` are ``[label, targets...]`` (only the targets
    are blended), ``age`` is the target age (blended). Sample weights are blended like targets.
    """
    count = tf.shape(images)[0]
    share = blend_shares(count, alpha, seed)
    partner = tf.random.shuffle(tf.range(count), seed=seed + 2)

    def blend(values: tf.Tensor) -> tf.Tensor:
        own = tf.reshape(share, tf.concat([[count], tf.ones([tf.rank(values) - 1], tf.int32)], axis=0))
        return own * values + (1.0 - own) * tf.gather(values, partner)

    mixed = {
        name: blend(value) if name == "age" else tf.concat([value[:, :1], blend(value[:, 1:])], axis=1)
        for name, value in labels.items()
    }
    if weights is None:
        return blend(images), mixed
    return blend(images), mixed, blend(weights)


def mixer(alpha: float, seed: int = 0) -> Callable[..., tuple[Any, ...]]:
    """:func:`mix_batch` with ``alpha`` and ``seed`` bound, for ``pipeline.image_dataset(mix=...)``."""

    def mix(images: tf.Tensor, labels: dict[str, tf.Tensor], *weights: tf.Tensor) -> tuple[Any, ...]:
        return mix_batch(images, labels, weights[0] if weights else None, alpha=alpha, seed=seed)

    return mix
