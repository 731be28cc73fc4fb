"""GPU and thread settings of a training process, as far as a CPU-only machine can check them: the
environment of a run that asked for no GPU, the threads TensorFlow is given, the memory settings asked
of each GPU listed, and mixed precision's graph and dtypes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agelab import runs
from agelab.config import build_config
from agelab.launchers import LaunchError, LocalLauncher, RayLauncher
from agelab.paths import PROJECT_ROOT
from agelab.training.devices import DevicePlan, visible_gpus_env
from tests.real_data import real_images_fixture

small_data = real_images_fixture(60, step=300)


def environment_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode("utf-8", "replace").split("\0") if "=" in item)


def test_a_local_run_that_asked_for_no_gpu_sees_none(isolated_dirs, small_data):
    launcher = LocalLauncher()
    config = {
        "model": "baseline_cnn",
        "weights": "none",
        "image_size": 64,
        "epochs": 50,
        "data": str(small_data),
    }
    hidden = launcher.submit({**config, "name": "nogpu", "gpus": 0})
    shown = launcher.submit({**config, "name": "anygpu"})
    try:
        assert environment_of(runs.load_run(hidden).status["pid"])["CUDA_VISIBLE_DEVICES"] == ""
        inherited = environment_of(runs.load_run(shown).status["pid"]).get("CUDA_VISIBLE_DEVICES")
        assert inherited == os.environ.get("CUDA_VISIBLE_DEVICES")  # left as this process has it
    finally:
        for run_dir in (hidden, shown):
            for _ in range(2):  # Stop, then Kill: the test needs only the processes' start
                try:
                    launcher.stop(run_dir)
                except LaunchError:
                    pass


def test_a_ray_job_that_reserved_no_gpu_sees_none():
    launcher = RayLauncher("10.0.0.5:8265")
    root = Path("/tmp/runs")
    assert launcher.job_runtime_env(root, build_config({}))["env_vars"]["CUDA_VISIBLE_DEVICES"] == ""
    assert (
        "CUDA_VISIBLE_DEVICES"
        not in launcher.job_runtime_env(root, build_config({"num_gpus": 0.5}))["env_vars"]
    )
    assert visible_gpus_env(build_config({"gpus": 0})) == {"CUDA_VISIBLE_DEVICES": ""}
    assert visible_gpus_env(build_config({})) == {}


def test_threads_follow_the_setting_or_the_cpus_a_ray_job_reserved():
    assert DevicePlan.of(build_config({})).threads == 0  # a local run: TensorFlow's own choice
    assert DevicePlan.of(build_config({}), ray_job=True).threads == 1
    assert DevicePlan.of(build_config({"num_cpus": 2.5}), ray_job=True).threads == 3
    assert DevicePlan.of(build_config({"num_cpus": 4, "threads": 2}), ray_job=True).threads == 2
    # Set in a fresh process, before TensorFlow runs an op, and read back from TensorFlow.
    code = (
        "import json, agelab, tensorflow as tf; from agelab.config import build_config;"
        " from agelab.training.devices import configure_devices;"
        " device, gpus = configure_devices(build_config({'num_cpus': 2}), ray_job=True);"
        " tf.constant(1.0) + 1.0;"
        " print(json.dumps([device, len(gpus), tf.config.threading.get_intra_op_parallelism_threads(),"
        " tf.config.threading.get_inter_op_parallelism_threads()]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300
    )
    device, gpus, intra, inter = json.loads(out.stdout.strip().splitlines()[-1])
    assert (intra, inter) == (2, 2) and device.endswith(", 2 threads")
    assert gpus == 0 and device.startswith("CPU")


class RecordingConfig:
    """``tf.config`` as far as :meth:`DevicePlan.apply` uses it, on a machine with ``gpus`` GPUs: what
    it is asked is recorded (no GPU here to ask for real)."""

    def __init__(self, gpus: list[str]) -> None:
        self.gpus, self.asked = gpus, []
        self.experimental = self
        self.threading = self

    def list_physical_devices(self, kind: str) -> list[str]:
        return list(self.gpus) if kind == "GPU" else ["CPU:0"]

    def set_visible_devices(self, devices, kind):
        self.asked.append(("visible", tuple(devices)))

    def set_memory_growth(self, device, on):
        self.asked.append(("growth", device, on))

    def LogicalDeviceConfiguration(self, memory_limit):  # noqa: N802  (TensorFlow's name)
        return ("limit", memory_limit)

    def set_logical_device_configuration(self, device, configs):
        self.asked.append(("limit", device, configs[0][1]))

    def set_intra_op_parallelism_threads(self, n):
        self.asked.append(("intra", n))

    def set_inter_op_parallelism_threads(self, n):
        self.asked.append(("inter", n))


class RecordingTF:
    def __init__(self, gpus: list[str]) -> None:
        self.config = RecordingConfig(gpus)


def test_memory_growth_is_asked_for_each_gpu_used_and_a_limit_when_set():
    tf = RecordingTF(["GPU:0", "GPU:1"])
    assert DevicePlan.of(build_config({})).apply(tf) == ["GPU:0", "GPU:1"]
    assert tf.config.asked == [("growth", "GPU:0", True), ("growth", "GPU:1", True)]
    tf = RecordingTF(["GPU:0", "GPU:1"])
    used = DevicePlan.of(build_config({"gpus": 1, "gpu_memory_mb": 4096, "threads": 3})).apply(tf)
    assert used == ["GPU:0"]
    assert tf.config.asked == [
        ("visible", ("GPU:0",)),
        ("limit", "GPU:0", 4096),
        ("intra", 3),
        ("inter", 3),
    ]


def test_a_setting_tensorflow_refuses_is_said_and_the_run_goes_on():
    import tensorflow as tf

    tf.constant(1.0) + 1.0  # the runtime has started: thread counts can no longer change
    said = []
    assert DevicePlan(gpus=-1, memory_limit_mb=0, threads=3).apply(tf, said.append) == []
    assert said and said[0].startswith("device settings left as they are")


def real_faces(folder: Path, count: int, size: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``count`` real UTKFace photos at ``size`` px, with their labels read from their names."""
    from PIL import Image

    from agelab.bins import get_scheme

    paths = sorted(folder.glob("*.jpg"))[:count]
    images = np.stack([np.asarray(Image.open(p).convert("RGB").resize((size, size))) for p in paths])
    ages = np.array([int(p.name.split("_")[0]) for p in paths])
    genders = np.array([int(p.name.split("_")[1]) for p in paths], dtype="float32")
    labels = {
        "age_bin": get_scheme("groups10").bin_of(ages),
        "age": ages.astype("float32"),
        "gender": genders,
    }
    return images.astype("float32"), labels


def test_mixed_precision_builds_float16_layers_with_float32_outputs_and_trains(small_data):
    import keras

    from agelab import models
    from agelab.training.stages import compile_model

    config = build_config({"model": "small_cnn", "weights": "none", "image_size": 48})
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        built = models.create_from_config(config, 10)
        model = built.model
        assert built.features.get_layer("block0_conv").compute_dtype == "float16"
        assert built.features.get_layer("block0_conv").variable_dtype == "float32"
        images, labels = real_faces(small_data, 8, 48)
        outputs = model(images)
        assert {name: value.dtype.name for name, value in outputs.items()} == {
            "age_bin": "float32",
            "age": "float32",
            "gender": "float32",
        }
        compile_model(model, 1e-3, config)
        assert type(model.optimizer).__name__ == "LossScaleOptimizer"
        before = model.get_layer("heads").get_layer("gender").get_weights()[0].copy()
        # Dynamic loss scaling skips a step whose float16 gradients overflow and halves its scale; it
        # starts at 2**15, so the first steps may be skipped before one is applied.
        for _ in range(40):
            logs = model.train_on_batch(images, labels, return_dict=True)
            if int(model.optimizer.iterations):
                break
        assert int(model.optimizer.iterations) == 1 and np.isfinite(logs["loss"])
        after = model.get_layer("heads").get_layer("gender").get_weights()[0]
        assert after.dtype == np.float32 and np.abs(after - before).max() > 0
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("value", ["-2", "two"])
def test_gpu_keys_are_checked(value):
    from agelab.config import ConfigError

    with pytest.raises(ConfigError, match=f"bad value gpus='{value}'"):
        build_config({"gpus": value})
