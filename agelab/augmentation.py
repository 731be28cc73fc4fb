"""Training-image augmentation in the graph: flips, rotation, zoom and shift, contrast, brightness and
white balance, and softening, each drawn from a seeded generator (:class:`Augmentation` makes the
layers from a run's ``aug_*`` keys); validation and test images are never augmented.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import agelab  # noqa: F401  (sets KERAS_HOME before keras is imported)

import tensorflow as tf  # noqa: E402  isort: skip


@dataclass(frozen=True)
class Augmentation:
    """Strengths of the training-time augmentations; 0 (or False) turns one off.

    ``shift`` (a fraction of the side) with ``rotation`` and ``zoom`` covers the framing jitter of a
    detector's keypoints; ``color`` (per-channel gain, i.e. white balance) and ``blur`` (the fraction
    of images softened by a random down-and-up scaling) make UTKFace's studio-like crops look more
    like photos and webcam frames.
    """

    flip: bool = True
    rotation: float = 0.05
    zoom: float = 0.1
    contrast: float = 0.1
    brightness: float = 0.1
    shift: float = 0.0
    color: float = 0.0
    blur: float = 0.0

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Augmentation | None:
        if not config["augment"]:
            return None
        return cls(
            config["aug_flip"],
            config["aug_rotation"],
            config["aug_zoom"],
            config["aug_contrast"],
            config["aug_brightness"],
            config["aug_shift"],
            config["aug_color"],
            config["aug_blur"],
        )

    def layers(self, seed: int = 0) -> Callable[..., tf.Tensor]:
        """The augmentations as one callable on a float batch: ``augment(images, training=True)``."""
        steps: list[Callable[..., tf.Tensor]] = []
        if self.flip or self.rotation or self.zoom or self.shift:
            steps.append(RandomGeometry(self.flip, self.rotation, self.zoom, seed=seed + 1, shift=self.shift))
        if self.blur:
            steps.append(RandomSoften(self.blur, seed=seed + 7))
        if self.contrast or self.brightness or self.color:
            steps.append(RandomTone(self.contrast, self.brightness, seed=seed + 4, color=self.color))

        def augment(images: tf.Tensor, training: bool = True) -> tf.Tensor:
            for step in steps:
                images = step(images, training=training)
            return images

        return augment


class RandomGeometry:
    """Random horizontal flip, rotation (a fraction of a full turn) and zoom (aspect kept) about the
    image centre, with reflected borders, in one resampling pass.

    It draws what ``RandomFlip("horizontal")``, ``RandomRotation(rotation)`` and ``RandomZoom(zoom)``
    draw, but those three Keras layers each pass over the image (15 + 44 + 64 ms per batch of 64 at
    112 px); this costs 44 ms, and on 2 cores every such pass is taken from training itself
    (bench/pipeline.py).
    """

    def __init__(self, flip: bool, rotation: float, zoom: float, seed: int = 0, shift: float = 0.0) -> None:
        self.flip, self.rotation, self.zoom, self.seed, self.shift = flip, rotation, zoom, seed, shift

    def __call__(self, images: tf.Tensor, training: bool = True) -> tf.Tensor:
        if not training:
            return images
        shape = tf.shape(images)
        n, height, width = shape[0], tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
        angle = tf.random.uniform([n], -self.rotation, self.rotation, seed=self.seed) * 2 * math.pi
        scale = 1.0 + tf.random.uniform([n], -self.zoom, self.zoom, seed=self.seed + 1)
        mirror = tf.ones([n])
        if self.flip:
            mirror = tf.where(tf.random.uniform([n], seed=self.seed + 2) < 0.5, -1.0, 1.0)
        # Output pixel p reads input pixel c + scale * R(angle) * diag(mirror, 1) * (p - c);
        # scale > 1 zooms out.
        cos, sin = tf.cos(angle) * scale, tf.sin(angle) * scale
        a0, a1, b0, b1 = cos * mirror, -sin, sin * mirror, cos
        cx, cy = (width - 1) / 2, (height - 1) / 2
        dx = tf.random.uniform([n], -self.shift, self.shift, seed=self.seed + 3) * width
        dy = tf.random.uniform([n], -self.shift, self.shift, seed=self.seed + 4) * height
        zeros = tf.zeros([n])
        transforms = tf.stack(
            [a0, a1, cx - a0 * cx - a1 * cy + dx, b0, b1, cy - b0 * cx - b1 * cy + dy, zeros, zeros], axis=1
        )
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=images,
            transforms=transforms,
            output_shape=shape[1:3],
            fill_value=0.0,
            interpolation="BILINEAR",
            fill_mode="REFLECT",
        )


class RandomTone:
    """Random contrast (about each image's per-channel mean), brightness and per-channel gain (white
    balance), on 0-255 images, in one element-wise pass, clipped to 0-255. Contrast and brightness
    draw what ``RandomContrast`` then ``RandomBrightness`` draw."""

    def __init__(self, contrast: float, brightness: float, seed: int = 0, color: float = 0.0) -> None:
        self.contrast, self.brightness, self.seed, self.color = contrast, brightness, seed, color

    def __call__(self, images: tf.Tensor, training: bool = True) -> tf.Tensor:
        if not training:
            return images
        n = tf.shape(images)[0]
        factor = 1.0 + tf.random.uniform([n, 1, 1, 1], -self.contrast, self.contrast, seed=self.seed)
        shift = 255.0 * tf.random.uniform([n, 1, 1, 1], -self.brightness, self.brightness, seed=self.seed + 1)
        if self.color:
            factor = factor * (
                1.0 + tf.random.uniform([n, 1, 1, 3], -self.color, self.color, seed=self.seed + 2)
            )
        mean = tf.reduce_mean(images, axis=(1, 2), keepdims=True)
        return tf.clip_by_value((images - mean) * factor + mean + shift, 0.0, 255.0)


class RandomSoften:
    """Softens a random ``fraction`` of the images as a small or distant face is softened: each
    batch draws one scale in 0.35-0.8, and the chosen images are shrunk to it and enlarged back."""

    def __init__(self, fraction: float, seed: int = 0) -> None:
        self.fraction, self.seed = fraction, seed

    def __call__(self, images: tf.Tensor, training: bool = True) -> tf.Tensor:
        if not training:
            return images
        shape = tf.shape(images)
        scale = tf.random.uniform([], 0.35, 0.8, seed=self.seed)
        small = tf.cast(tf.round(tf.cast(shape[1:3], tf.float32) * scale), tf.int32)
        soft = tf.image.resize(tf.image.resize(images, small, antialias=True), shape[1:3])
        chosen = tf.random.uniform([shape[0], 1, 1, 1], seed=self.seed + 1) < self.fraction
        return tf.where(chosen, soft, images)
