"""The devices a run trains on: what this machine has (``gpu_status``, cheap, for the Train page),
their description (``describe_device``, for the run), and the distribution strategy over them."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any


def gpu_status() -> tuple[bool, str]:
    """Whether a GPU is usable for training, in words. Cheap: it never imports TensorFlow."""
    import importlib.metadata

    gpus: list[str] = []
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=5).stdout
            gpus = [line.split(" (UUID")[0] for line in out.splitlines() if line.startswith("GPU")]
        except (OSError, subprocess.SubprocessError):
            gpus = []
    if not gpus:
        return False, f"No GPU found: runs train on the CPU ({os.cpu_count()} cores)."
    try:
        importlib.metadata.version("tensorflow-cpu")
        cpu_only = True
    except importlib.metadata.PackageNotFoundError:
        cpu_only = False
    if cpu_only:
        return False, f"{', '.join(gpus)} found, but tensorflow-cpu is installed, so runs use the CPU."
    return True, f"{', '.join(gpus)}: runs use the GPU (several GPUs: MirroredStrategy)."


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
