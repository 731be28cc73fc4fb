"""Launch backends and GPU set-up: the requirement files and the Makefile's pick, MirroredStrategy on
two logical devices, the Ray keys, the Ray launcher without ``ray``, and Ray runs in the runs table.
The Ray launcher against a real head is in test_cluster.py (marker ``cluster``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agelab import launchers, run_status, runs, sweeps
from agelab.commands import runs as runs_command
from agelab.config import ConfigError, build_config
from agelab.paths import PROJECT_ROOT
from tests.real_data import copy_real_images


def requirement_lines(name: str) -> list[str]:
    return (PROJECT_ROOT / name).read_text().splitlines()


def test_gpu_requirements_differ_from_cpu_only_in_tensorflow():
    cpu, gpu = requirement_lines("requirements.txt"), requirement_lines("requirements-gpu.txt")
    assert len(cpu) == len(gpu)
    differ = [(a, b) for a, b in zip(cpu, gpu) if a != b]
    assert differ == [("tensorflow-cpu==2.21.0", "tensorflow[and-cuda]==2.21.0")]


def make_plan(tmp_path: Path, smi_output: str | None) -> str:
    """What ``make venv`` would run (dry run), with a fake nvidia-smi printing ``smi_output``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if smi_output is not None:
        smi = bin_dir / "nvidia-smi"
        smi.write_text(f"#!/bin/sh\nprintf '%s\\n' '{smi_output}'\n")
        smi.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:/usr/bin:/bin")
    env.pop("REQS", None)
    out = subprocess.run(
        ["make", "-n", "-B", "--no-print-directory", "venv"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_make_installs_the_cuda_build_when_nvidia_smi_lists_a_gpu(tmp_path):
    plan = make_plan(tmp_path, "GPU 0: NVIDIA H200 (UUID: GPU-0a1b2c3d)")
    assert "pip install -q --disable-pip-version-check -r requirements-gpu.txt" in plan
    assert "pip uninstall -q -y tensorflow-cpu" in plan


@pytest.mark.parametrize("smi", [None, "No devices were found"])
def test_make_installs_tensorflow_cpu_without_a_gpu(tmp_path, smi):
    plan = make_plan(tmp_path, smi)
    assert "-r requirements.txt" in plan and "requirements-gpu.txt" not in plan
    assert "pip uninstall -q -y tensorflow " in plan


MIRRORED = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import agelab
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    from agelab.training import run, stages, verb as training

    compiled = []
    real_compile = stages.compile_model

    def spy(model, *args, **kwargs):
        compiled.append({
            "in_scope": tf.distribute.has_strategy(),
            "replicas": tf.distribute.get_strategy().num_replicas_in_sync,
            "variable": type(model.trainable_variables[0].value).__name__,
        })
        return real_compile(model, *args, **kwargs)

    stages.compile_model = spy
    run.Trainer._export_litert = lambda self: None  # 30 s that proves nothing here
    training.configure_devices = lambda config, ray_job=False: (f"CPU x{len(devices)} (logical)", devices)
    config = {"model": "baseline_cnn", "weights": "none", "image_size": 64, "epochs": 1, "batch_size": 4,
              "max_images": 60, "crop": "none", "data": sys.argv[1]}
    run_dir = training.train(config, Path(sys.argv[2]))
    print(json.dumps({
        "devices": devices,
        "compiled": compiled,
        "metrics": json.loads((run_dir / "metrics.json").read_text()),
        "progress": json.loads((run_dir / "progress.json").read_text()),
        "status": json.loads((run_dir / "status.json").read_text()),
    }))
    """
)


def test_mirrored_strategy_on_two_logical_devices_scales_the_batch(utkface_dir, isolated_dirs):
    data = isolated_dirs / "utk"
    copy_real_images(utkface_dir, data, 80, step=200)
    run_dir = runs.create_run(build_config({"model": "baseline_cnn"}), isolated_dirs / "runs")
    out = subprocess.run(
        [sys.executable, "-c", MIRRORED, str(data), str(run_dir)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(result["devices"]) == 2
    assert result["status"]["status"] == "finished"
    # Compiled inside MirroredStrategy's scope, with the model's variables mirrored on both devices.
    assert result["compiled"] == [{"in_scope": True, "replicas": 2, "variable": "MirroredVariable"}]
    metrics = result["metrics"]
    assert metrics["replicas"] == 2 and metrics["global_batch"] == 8  # batch_size 4 per replica
    assert result["progress"]["steps"] == -(-metrics["n_train"] // 8)


def test_ray_resource_keys_are_validated():
    config = build_config({"num_gpus": "0.5", "num_cpus": "2"})
    assert (config["num_gpus"], config["num_cpus"]) == (0.5, 2.0)
    assert build_config({})["num_cpus"] == 1.0 and build_config({})["num_gpus"] == 0.0
    with pytest.raises(ConfigError, match=r"num_gpus='-1': num_gpus takes a number >= 0"):
        build_config({"num_gpus": "-1"})
    with pytest.raises(ConfigError, match="num_cpus='two'"):
        build_config({"num_cpus": "two"})
    with pytest.raises(ConfigError, match="Did you mean 'num_gpus'"):
        build_config({"num_gpu": 1})


def test_a_ray_address_without_ray_says_what_to_install(monkeypatch, isolated_dirs, utkface_dir):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    monkeypatch.setenv("AGELAB_RAY_ADDRESS", "10.1.2.3:8265")
    launcher = launchers.get_launcher()
    assert isinstance(launcher, launchers.RayLauncher) and launcher.address == "http://10.1.2.3:8265"
    message = launchers.ray_missing(launcher.address)
    assert "pip install -r requirements-cluster.txt" in message and "10.1.2.3:8265" in message
    with pytest.raises(launchers.LaunchError, match="requirements-cluster.txt"):
        launcher.submit({"model": "baseline_cnn", "data": str(utkface_dir)})
    assert runs.list_runs() == []  # no folder for a run that could not be sent
    with pytest.raises(launchers.LaunchError, match="requirements-cluster.txt"):
        sweeps.create_sweep(
            {"seed": ["0", "1"]}, {"model": "baseline_cnn", "data": str(utkface_dir)}, ray_address="x:1"
        )
    assert sweeps.list_sweeps() == []
    monkeypatch.delenv("AGELAB_RAY_ADDRESS")
    assert isinstance(launchers.get_launcher(), launchers.LocalLauncher)


def test_the_sweep_verb_without_ray_exits_with_the_install_line(isolated_dirs):
    code = textwrap.dedent(
        """
        import sys
        sys.modules["ray"] = None
        from agelab.cli import main
        sys.exit(main(["sweep", "seed=0,1", "--ray", "127.0.0.1:8265"]))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert out.returncode == 2
    assert "pip install -r requirements-cluster.txt" in out.stderr


def test_an_unreachable_cluster_is_named_and_leaves_no_run(isolated_dirs, utkface_dir):
    pytest.importorskip("ray", reason="needs ray (requirements-cluster.txt) to contact a cluster")
    with pytest.raises(launchers.LaunchError, match="cannot reach the Ray cluster at http://127.0.0.1:9"):
        launchers.RayLauncher("127.0.0.1:9").submit({"model": "baseline_cnn", "data": str(utkface_dir)})
    assert runs.list_runs() == []


def test_ray_runs_are_listed_with_job_id_address_and_sweep(isolated_dirs):
    root = isolated_dirs / "runs"
    ray_run = runs.create_run(build_config({"model": "baseline_cnn", "name": "onray"}), root)
    run_status.write_status(
        ray_run,
        launcher="ray",
        job_id="agelab-onray-1-abc",
        ray_address="http://10.0.0.5:8265",
        sweep="grid-1",
    )
    local_run = runs.create_run(build_config({"model": "baseline_cnn", "name": "here"}), root)
    # Both queued long ago: the local one's process never started (failed); Ray may still queue its job.
    for path in (ray_run, local_run):
        run_status.write_status(path, created=run_status.now() - 10 * run_status.QUEUED_TIMEOUT_S)
    table = runs.runs_table(runs.list_runs(root)).set_index("run")
    assert table.loc["onray-1", ["launcher", "job_id", "address", "sweep", "status"]].tolist() == [
        "ray",
        "agelab-onray-1-abc",
        "http://10.0.0.5:8265",
        "grid-1",
        "queued",
    ]
    assert table.loc["here-1", ["launcher", "status"]].tolist() == ["local", "failed"]
    assert isinstance(launchers.launcher_for(ray_run), launchers.RayLauncher)
    assert isinstance(launchers.launcher_for(local_run), launchers.LocalLauncher)


def test_a_finished_ray_run_whose_folder_is_not_here_is_explained(isolated_dirs):
    run_dir = runs.create_run(build_config({"model": "baseline_cnn"}), isolated_dirs / "runs")
    run_status.write_status(
        run_dir, launcher="ray", ray_address="http://10.0.0.5:8265", status="finished", remote_only=True
    )
    warning = launchers.not_visible_warning(runs.load_run(run_dir))
    assert "AGELAB_RUNS_DIR" in warning and str(run_dir) in warning
    (run_dir / "metrics.json").write_text(json.dumps({"test_age_mae": 5.0}))
    assert launchers.not_visible_warning(runs.load_run(run_dir)) is None


def test_the_ray_job_carries_the_code_but_not_the_venv_or_data(isolated_dirs, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", "relative/keras")
    env = launchers.RayLauncher("10.0.0.5:8265").runtime_env(isolated_dirs / "runs")
    assert env["working_dir"] == str(PROJECT_ROOT)
    for folder in ("/.venv/", "/data/", "/runs/", "/.git/"):
        assert folder in env["excludes"]
    assert env["env_vars"]["AGELAB_RUNS_DIR"] == str((isolated_dirs / "runs").resolve())
    assert env["env_vars"]["KERAS_HOME"] == str(Path("relative/keras").resolve())
    assert int(env["env_vars"]["RAY_JOB_STOP_WAIT_TIME_S"]) >= 30  # time to save on Stop


def test_the_train_page_says_what_to_install_for_a_ray_address(monkeypatch, isolated_dirs, utkface_dir):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setenv("AGELAB_RAY_ADDRESS", "10.1.2.3:8265")
    app = AppTest.from_file(str(PROJECT_ROOT / "pages" / "train.py"), default_timeout=60).run()
    assert not app.exception
    assert any("requirements-cluster.txt" in w.value for w in app.warning)
    fields = {w.label: w for w in app.text_input}
    assert fields["Ray address"].value == "10.1.2.3:8265"
    {w.label: w for w in app.selectbox}["Model"].set_value("baseline_cnn")
    {w.label: w for w in app.selectbox}["Weights"].set_value("none")
    {w.label: w for w in app.checkbox}["Fast mode"].set_value(False)
    fields["Dataset folder"].set_value(str(utkface_dir))
    next(b for b in app.button if b.label == "Launch").click().run()
    assert any("Not launched" in e.value and "requirements-cluster.txt" in e.value for e in app.error)
    assert runs.list_runs() == []


def test_the_runs_verb_lists_watches_and_stops(isolated_dirs, capsys):
    root = isolated_dirs / "runs"
    done = runs.create_run(build_config({"model": "baseline_cnn", "name": "done"}), root)
    run_status.write_status(
        done, status="finished", launcher="ray", job_id="agelab-done-1-x", ray_address="http://h:8265"
    )
    (done / "metrics.json").write_text(json.dumps({"test_age_mae": 7.5, "n_test": 9}))
    assert runs_command.cli([]) == 0
    listed = capsys.readouterr().out
    assert "done-1" in listed and "agelab-done-1-x" in listed and "ray" in listed
    assert runs_command.cli(["watch", "done-1"]) == 0
    assert capsys.readouterr().out.splitlines() == ["done-1: finished", "test_age_mae=7.5"]
    assert runs_command.cli(["stop", str(done)]) == 0
    assert capsys.readouterr().out.strip() == "done-1: not running"
    assert runs_command.cli(["stop", "nothere-1"]) == 2
    assert "no run 'nothere-1'" in capsys.readouterr().err
    assert runs_command.cli(["submit", "epoch=1"]) == 2
    assert "Did you mean 'epochs'" in capsys.readouterr().err
