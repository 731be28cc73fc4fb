"""A run that repeats: one seed for Python, NumPy, TensorFlow and Keras, and TensorFlow's op
determinism, so ``python -m agelab train --config runs/<run>/config.json`` gives the same model.

``keras.utils.set_random_seed`` alone seeds the generators but leaves ops free to add floating-point
numbers in any order across threads; ``tf.config.experimental.enable_op_determinism`` makes every op
pick a deterministic algorithm (or raise where none exists). tf.data keeps its order: its maps run
with ``deterministic=True`` and its shuffles and random augmentations take seeds from the run's.
Op determinism cannot be turned off again in a process, which is why a run is its own process.
"""

from __future__ import annotations

import agelab  # noqa: F401  (sets KERAS_HOME before keras is imported)

import keras  # noqa: E402  isort: skip


def seed_run(seed: int, deterministic: bool = True) -> None:
    """Seed every generator with ``seed``; with ``deterministic``, also make TensorFlow's ops
    deterministic for the rest of this process."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
