"""The devices a run trains on: their description, and the distribution strategy over them."""

from __future__ import annotations

import os
from typing import Any


def describe_device() -> tuple[str, list[Any]]:
    """A one-line device description and the visible GPUs."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return f"CPU ({os.cpu_count()} cores)", []
    names = []
    for gpu in gpus:
        try:
            names.append(tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name))
        except Exception:  # details are optional; the device itself is what matters
            names.append(gpu.name)
    return f"GPU x{len(gpus)}: {', '.join(names)}", gpus


def make_strategy(devices: list[Any]) -> Any:
    """``MirroredStrategy`` over several devices (the visible GPUs, or logical device names such
    as ``/device:CPU:1``), else the default strategy. The model is built and compiled in its scope,
    and each batch of ``batch_size`` per replica makes one global batch."""
    import tensorflow as tf

    if len(devices) > 1:
        names = [d for d in devices if isinstance(d, str)]
        return tf.distribute.MirroredStrategy(devices=names) if names else tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()
