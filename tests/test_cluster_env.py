"""What a Ray job of agelab carries (agelab.cluster), and a Tune search asked for without Ray: no head
needed, so these run in the default suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from agelab import cluster, launchers
from agelab.commands import sweep as sweep_command
from agelab.paths import PROJECT_ROOT


def test_a_job_on_this_machine_reads_the_project_locations_not_rays_copy(isolated_dirs, monkeypatch):
    monkeypatch.delenv("AGELAB_MODELS_DIR", raising=False)
    env = launchers.RayLauncher("127.0.0.1:8265").runtime_env(isolated_dirs / "runs")
    variables = env["env_vars"]
    assert variables["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    assert variables["AGELAB_CACHE_DIR"] == str((isolated_dirs / "cache").resolve())
    assert variables["AGELAB_MODELS_DIR"] == str(PROJECT_ROOT / "models")  # the default, made absolute
    for pattern in ("/models/*.keras", "*.tflite", "/runs/", "/data/", "/.venv/"):
        assert pattern in env["excludes"]


def test_a_job_elsewhere_keeps_its_caches_on_its_node(monkeypatch, tmp_path):
    monkeypatch.delenv("AGELAB_CACHE_DIR", raising=False)
    monkeypatch.delenv("AGELAB_MODELS_DIR", raising=False)
    monkeypatch.setenv("AGELAB_MIRROR", "s3://bucket/agelab-mirror")
    variables = cluster.job_env("http://10.255.0.5:8265", tmp_path / "runs")
    assert variables["AGELAB_CACHE_DIR"] == cluster.REMOTE_CACHE_DIR  # not the job's package folder
    assert "AGELAB_MODELS_DIR" not in variables  # the node's own (the image's)
    assert variables["AGELAB_MIRROR"] == "s3://bucket/agelab-mirror"
    assert not cluster.is_local_address("10.255.0.5:8265") and cluster.is_local_address("localhost:8265")


def test_the_entrypoint_runs_this_interpreter_where_it_exists_else_the_nodes_python(tmp_path):
    command = cluster.job_entrypoint("--help")
    # Run by a shell without the venv on PATH, as Ray runs a job's entrypoint: agelab starts.
    bare = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run(["sh", "-c", command], cwd=PROJECT_ROOT, env=bare, capture_output=True, text=True)
    assert out.returncode == 0 and "usage: python -m agelab VERB" in out.stdout, out.stderr
    # On a node without this interpreter (an image), `python` on its PATH runs it.
    elsewhere = command.replace(sys.executable, str(tmp_path / "no-such-python"))
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "python").symlink_to(sys.executable)
    env = {**bare, "PATH": f"{fake_bin}:/usr/bin:/bin"}
    out = subprocess.run(["sh", "-c", elsewhere], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0 and "usage: python -m agelab VERB" in out.stdout, out.stderr


def test_without_ray_a_search_is_refused_in_one_sentence(monkeypatch, capsys, isolated_dirs):
    monkeypatch.setitem(sys.modules, "ray", None)
    assert sweep_command.cli(["search=asha", "model=baseline_cnn", "seed=0,1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Ray Tune, which is not installed" in err and "requirements-cluster.txt" in err
    assert len(err.splitlines()) == 1
    assert not (isolated_dirs / "runs" / "sweeps").exists()
    assert sweep_command.wants_tune(["search=random"]) and not sweep_command.wants_tune(["seed=0,1"])


def test_cluster_status_without_a_head_says_so(isolated_dirs):
    out = subprocess.run(
        [sys.executable, "-m", "agelab", "cluster", "status"], cwd=PROJECT_ROOT, capture_output=True,
        text=True, env={**os.environ, "AGELAB_RUNS_DIR": str(isolated_dirs / "runs")},
    )  # fmt: skip
    assert out.returncode == 0 and '"running": false' in out.stdout
    assert not Path(isolated_dirs / "runs" / cluster.STATE_FILE).exists()
