"""The devices a run trains on: what this machine has (``gpu_status``, cheap, for the Train page),
their description (``describe_device``, for the run), and the distribution strategy over them."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from dataclasses import dataclass
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


def describe_device(gpus: list[Any] | None = None) -> tuple[str, list[Any]]:
    """A one-line device description and the GPUs (``gpus``, else every visible one)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU") if gpus is None else gpus
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


# The variable that hides GPUs from CUDA, and so from TensorFlow, in a process that asked for none.
HIDE_GPUS = "CUDA_VISIBLE_DEVICES"


def visible_gpus_env(config: dict[str, Any]) -> dict[str, str]:
    """What to add to a launched run's environment for the GPUs it asked for: ``gpus=0`` hides them all
    (``CUDA_VISIBLE_DEVICES=""``), so the process never touches a GPU a neighbour uses."""
    return {HIDE_GPUS: ""} if config.get("gpus", -1) == 0 else {}


@dataclass(frozen=True)
class DevicePlan:
    """How a training process sets TensorFlow up, decided from its config before TensorFlow starts."""

    gpus: int  # how many of the GPUs it sees it uses (-1: all)
    memory_limit_mb: int  # 0: memory growth on each GPU used; else this limit on each
    threads: int  # intra- and inter-op threads (0: TensorFlow's own choice, one per core)

    @classmethod
    def of(cls, config: dict[str, Any], ray_job: bool = False) -> DevicePlan:
        """A Ray job gets threads for the CPUs it reserved (``num_cpus``) unless ``threads`` is set; a
        local run gets TensorFlow's default unless ``threads`` is set."""
        threads = int(config.get("threads", 0))
        if not threads and ray_job:
            threads = max(1, math.ceil(config.get("num_cpus", 1)))
        return cls(int(config.get("gpus", -1)), int(config.get("gpu_memory_mb", 0)), threads)

    def apply(self, tf: Any, log: Any = print) -> list[Any]:
        """The plan through ``tf.config`` (TensorFlow, passed in); the GPUs the run uses. Called before
        TensorFlow runs an op: a setting it refuses (its runtime already started, as in a test process
        that trained before) is said once and left as it is."""
        found = tf.config.list_physical_devices("GPU")
        used = found if self.gpus < 0 else found[: self.gpus]
        try:
            if len(used) < len(found):
                tf.config.set_visible_devices(used, "GPU")
            for gpu in used:
                if self.memory_limit_mb:
                    config = tf.config.LogicalDeviceConfiguration(memory_limit=self.memory_limit_mb)
                    tf.config.set_logical_device_configuration(gpu, [config])
                else:
                    # Without it TensorFlow takes nearly all of a GPU's memory, and a second run on it fails.
                    tf.config.experimental.set_memory_growth(gpu, True)
            if self.threads:
                tf.config.threading.set_intra_op_parallelism_threads(self.threads)
                tf.config.threading.set_inter_op_parallelism_threads(self.threads)
        except (RuntimeError, ValueError) as err:
            log(f"device settings left as they are: {err}")
        return used


def configure_devices(config: dict[str, Any], ray_job: bool = False) -> tuple[str, list[Any]]:
    """Set TensorFlow up for this training process (:class:`DevicePlan`), once, at its start; the
    device description and the GPUs it trains on."""
    import tensorflow as tf

    plan = DevicePlan.of(config, ray_job)
    used = plan.apply(tf)
    device, _ = describe_device(used)
    if plan.threads:
        device += f", {plan.threads} threads"
    return device, used
