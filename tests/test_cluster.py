"""Runs and sweeps on a real Ray head, started on 127.0.0.1 for these tests and stopped after them.

Marked ``cluster`` (``make test-cluster`` installs requirements-cluster.txt and runs them); they skip
with the reason when ``ray`` is not installed. They also measure what Ray costs: a submission against
a local launch of the same tiny run, and a 2 x 2 sweep two at a time against its runs one after
another; the figures go to ``<tmp>/cluster_figures.json`` and the test output (README, cluster section).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import copy_real_images

from agelab import launchers, runs, sweeps
from agelab.paths import PROJECT_ROOT

pytestmark = pytest.mark.cluster
ray = pytest.importorskip(
    "ray", reason="ray is not installed: make test-cluster installs requirements-cluster.txt"
)

TINY = {
    "model": "seed_cnn",
    "weights": "none",
    "image_size": 64,
    "epochs": 1,
    "max_images": 60,
    "crop": "none",
}
LONG = {**TINY, "epochs": 500, "batch_size": 4}
FIGURES: dict[str, float] = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 900.0, every: float = 2.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s")


@pytest.fixture(scope="module")
def ray_env(tmp_path_factory):
    # Without RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 Ray moves to the machine's network address.
    env = dict(
        os.environ,
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    )
    env.pop("AGELAB_RAY_ADDRESS", None)
    return env


@pytest.fixture(scope="module")
def head(ray_env, tmp_path_factory):
    """A Ray head on loopback with 2 CPUs; yields its dashboard address; ``ray stop`` at the end."""
    ray_bin = str(Path(sys.executable).parent / "ray")
    dash = free_port()
    temp = Path(f"/tmp/ray-agelab-{os.getpid()}")  # short: Ray's socket paths must fit 107 bytes
    command = [
        ray_bin, "start", "--head", "--port", str(free_port()),
        "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
        "--node-ip-address", "127.0.0.1", "--num-cpus", "2", "--disable-usage-stats",
        "--temp-dir", str(temp),
    ]  # fmt: skip
    started = subprocess.run(command, env=ray_env, capture_output=True, text=True, timeout=300)
    try:
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
        address = f"http://127.0.0.1:{dash}"
        from ray.util.state import list_nodes

        nodes = wait_for(lambda: list_nodes(address=address), timeout=120)
        assert [n.node_ip for n in nodes] == ["127.0.0.1"], nodes
        yield address
    finally:
        subprocess.run([ray_bin, "stop", "--force"], env=ray_env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def shared(utkface_dir, tmp_path_factory, head):
    """Runs, caches and data in one folder that both sides (here, one machine) see."""
    base = tmp_path_factory.mktemp("shared")
    data = base / "utk"
    copy_real_images(utkface_dir, data, 120, step=150)
    return base


@pytest.fixture
def env(shared, monkeypatch):
    monkeypatch.setenv("AGELAB_RUNS_DIR", str(shared / "runs"))
    monkeypatch.setenv("AGELAB_CACHE_DIR", str(shared / "cache"))
    monkeypatch.delenv("AGELAB_RAY_ADDRESS", raising=False)
    return shared


def finished(launcher, run_dir):
    status = launcher.status(run_dir)
    return status if status.get("status") not in runs.ACTIVE else None


def record(name: str, value: float, shared: Path) -> None:
    FIGURES[name] = round(value, 1)
    (shared / "cluster_figures.json").write_text(json.dumps(FIGURES, indent=2))
    print(f"\n{name}: {value:.1f}", flush=True)


def test_a_run_submitted_to_ray_finishes_with_its_metrics_in_the_table(head, env):
    config = {**TINY, "data": str(env / "utk")}
    local = launchers.LocalLauncher()
    start = time.perf_counter()
    local_dir = local.submit(config)
    assert wait_for(lambda: finished(local, local_dir))["status"] == "finished"
    local_s = time.perf_counter() - start

    ray_launcher = launchers.get_launcher(head)
    assert isinstance(ray_launcher, launchers.RayLauncher)
    start = time.perf_counter()
    run_dir = ray_launcher.submit(config)
    submit_s = time.perf_counter() - start
    status = wait_for(lambda: finished(ray_launcher, run_dir))
    ray_s = time.perf_counter() - start
    assert status["status"] == "finished", status.get("error")
    assert status["ray_status"] in ("RUNNING", "SUCCEEDED")
    assert status["job_id"].startswith("agelab-") and status["ray_address"] == head
    info = wait_for(
        lambda: (i := ray_launcher.client.get_job_info(status["job_id"])).status == "SUCCEEDED" and i
    )
    assert info.entrypoint.startswith("python -m agelab train --run-dir")

    table = runs.runs_table(launchers.list_runs()).set_index("run")
    row = table.loc[run_dir.name]
    assert row["launcher"] == "ray" and row["job_id"] == status["job_id"] and row["address"] == head
    assert row["status"] == "finished" and 0 <= row["bin_acc"] <= 1 and row["age_mae"] > 0
    assert table.loc[local_dir.name, "launcher"] == "local"
    assert "[train] epoch 1/1" in ray_launcher.logs(run_dir)
    assert launchers.not_visible_warning(runs.load_run(run_dir)) is None
    record("local_run_s", local_s, env)
    record("ray_run_s", ray_s, env)
    record("ray_submit_call_s", submit_s, env)
    record("ray_overhead_s", ray_s - local_s, env)


def test_a_ray_run_is_stopped_through_the_client(head, env):
    launcher = launchers.get_launcher(head)
    run_dir = launcher.submit({**LONG, "data": str(env / "utk"), "name": "stopme"})
    wait_for(lambda: runs.load_run(run_dir).progress.get("steps_done", 0) >= 2, timeout=600)
    assert launcher.stop(run_dir) == "stopping"
    status = wait_for(lambda: finished(launcher, run_dir), timeout=300)
    assert status["status"] == "stopped", status
    job = launcher.client.get_job_info(status["job_id"])
    assert wait_for(lambda: launcher.client.get_job_status(job.submission_id) == "STOPPED", timeout=120)
    assert launcher.stop(run_dir) == "not running"


def test_a_two_by_two_sweep_two_at_a_time(head, env):
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "agelab", "sweep", *(f"{k}={v}" for k, v in TINY.items()),
         f"data={env / 'utk'}", "seed=0,1", "batch_size=16,32", "--name", "grid",
         "--max-concurrent", "2", "--ray", head, "--wait"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1800, env=dict(os.environ),
    )  # fmt: skip
    wall = time.perf_counter() - start
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    sweep_dir = Path(out.stdout.strip().splitlines()[-1])
    sweep = sweeps.read_sweep(sweep_dir)
    assert sweep["backend"] == "ray" and sweep["max_concurrent"] == 2 and sweep["status"] == "launched"
    assert [e["state"] for e in sweep["runs"]] == ["launched"] * 4

    done = [runs.load_run(e["run"]) for e in sweep["runs"]]
    assert all(r.state == "finished" for r in done), [r.status.get("error") for r in done]
    assert {(r.config["seed"], r.config["batch_size"]) for r in done} == {(0, 16), (0, 32), (1, 16), (1, 32)}
    spans = [(r.status["started"], r.status["ended"]) for r in done]
    most = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
    assert most <= 2, spans

    table = runs.runs_table(runs.list_runs())
    assert (table["sweep"] == sweep_dir.name).sum() == 4
    compared = sweeps.compare(sweep)
    assert compared["best"].sum() == 1
    best = compared[compared["best"]].iloc[0]
    assert best["val_loss"] == compared["val_loss"].min()
    assert "best (lowest val loss)" in [
        t.name for t in sweeps.comparison_figure(compared, ["seed", "batch_size"]).data
    ]
    assert "*" in out.stdout  # the printed comparison marks the best run

    one_by_one = sum(r.duration_s for r in done)
    record("sweep_wall_s", wall, env)
    record("sweep_runs_sum_s", one_by_one, env)
    if "ray_run_s" in FIGURES:
        record("sweep_sequential_estimate_s", 4 * FIGURES["ray_run_s"], env)
