"""Runs and sweeps on a real Ray head, started on 127.0.0.1 for these tests and stopped after them.

Marked ``cluster`` (``make test-cluster`` installs requirements-cluster.txt and runs them); they skip
with the reason when ``ray`` is not installed. They also measure what Ray costs: a submission against
a local launch of the same tiny run, and a 2 x 2 sweep two at a time against its runs one after
another; the figures go to ``<tmp>/cluster_figures.json`` and the test output (README, cluster section).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_runs import wait_for
from test_sweeps import TINY

from agelab import cluster, launchers, runs, sweep_compare, sweep_records
from agelab.paths import PROJECT_ROOT
from tests.real_data import copy_real_images

pytestmark = pytest.mark.cluster
ray = pytest.importorskip(
    "ray", reason="ray is not installed: make test-cluster installs requirements-cluster.txt"
)

LONG = {**TINY, "epochs": 500, "batch_size": 4}
FIGURES: dict[str, float] = {}


def short_temp_dir(tag: str) -> Path:
    # Short: Ray's socket paths inside it must fit in 107 bytes.
    return Path(f"/tmp/ray-agelab-{tag}-{os.getpid()}")


def without_venv_path() -> dict[str, str]:
    """This environment with the venv's bin folder off PATH: a shell where nobody activated it."""
    venv_bin = str(Path(sys.executable).parent)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and p != venv_bin)
    env.pop("AGELAB_RAY_ADDRESS", None)
    return env


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """A head started as `cluster up` does (2 CPUs, its own ports and temp dir, the venv not on PATH);
    yields its dashboard address; `cluster down` stops it, and only it, at the end."""
    record = tmp_path_factory.mktemp("head")
    state = cluster.up(cluster.free_port(), num_cpus=2, temp_dir=short_temp_dir("head"), root=record)
    try:
        from ray.util.state import list_nodes

        nodes = wait_for(lambda: list_nodes(address=state["address"]), timeout=120)
        assert [n.node_ip for n in nodes] == ["127.0.0.1"], nodes
        yield state["address"]
    finally:
        print(f"\nstopping the test head: {cluster.down(record)}", flush=True)


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
    assert info.entrypoint == cluster.job_entrypoint("train", "--run-dir", str(run_dir.resolve()))
    assert info.runtime_env["env_vars"]["AGELAB_CACHE_DIR"] == str(env / "cache")

    table = runs.runs_table(launchers.list_runs()).set_index("run")
    row = table.loc[run_dir.name]
    assert row["launcher"] == "ray" and row["job_id"] == status["job_id"] and row["address"] == head
    assert row["status"] == "finished" and 0 <= row["bin_acc"] <= 1 and row["age_mae"] > 0
    assert table.loc[local_dir.name, "launcher"] == "local"
    assert "[train] epoch 1/1" in ray_launcher.logs(run_dir)
    assert launchers.not_visible_warning(runs.load_run(run_dir)) is None
    # Again, now that the cluster holds the code package and a worker: the overhead of every later run.
    start = time.perf_counter()
    again = ray_launcher.submit(config)
    assert wait_for(lambda: finished(ray_launcher, again))["status"] == "finished"
    warm_s = time.perf_counter() - start
    record("local_run_s", local_s, env)
    record(
        "local_start_s",
        runs.load_run(local_dir).status["started"] - runs.load_run(local_dir).status["created"],
        env,
    )
    record("ray_first_run_s", ray_s, env)
    record("ray_run_s", warm_s, env)
    record(
        "ray_start_s", runs.load_run(again).status["started"] - runs.load_run(again).status["created"], env
    )
    record("ray_submit_call_s", submit_s, env)
    record("ray_overhead_first_s", ray_s - local_s, env)
    record("ray_overhead_s", warm_s - local_s, env)


def agelab(*args: str) -> subprocess.CompletedProcess:
    out = subprocess.run(
        [sys.executable, "-m", "agelab", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return out


def test_a_ray_run_is_launched_and_stopped_from_the_command_line(head, env):
    config = {**LONG, "data": str(env / "utk"), "name": "stopme"}
    out = agelab("runs", "submit", *(f"{k}={v}" for k, v in config.items()), "--ray", head)
    run_dir = Path(out.stdout.strip().splitlines()[-1])
    launcher = launchers.launcher_for(run_dir)
    assert isinstance(launcher, launchers.RayLauncher) and launcher.address == head
    wait_for(lambda: runs.load_run(run_dir).progress.get("steps_done", 0) >= 2, timeout=600)
    assert "stopme-1" in agelab("runs").stdout
    assert agelab("runs", "stop", run_dir.name).stdout.strip() == f"{run_dir.name}: stopping"
    status = wait_for(lambda: finished(launcher, run_dir), timeout=300)
    assert status["status"] == "stopped", status
    assert wait_for(lambda: launcher.client.get_job_status(status["job_id"]) == "STOPPED", timeout=120)
    assert agelab("runs", "stop", run_dir.name).stdout.strip() == f"{run_dir.name}: not running"


def run_sweep(
    head: str, env: Path, name: str, max_concurrent: int
) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "agelab", "sweep", *(f"{k}={v}" for k, v in TINY.items()),
         f"data={env / 'utk'}", "seed=0,1", "batch_size=16,32", "--name", name,
         "--max-concurrent", str(max_concurrent), "--ray", head, "--wait"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1800, env=dict(os.environ),
    )  # fmt: skip
    wall = time.perf_counter() - start
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out, wall


def most_at_once(done: list[runs.Run]) -> int:
    spans = [(r.status["started"], r.status["ended"]) for r in done]
    return max(sum(s <= t < e for s, e in spans) for t, _ in spans)


def test_a_two_by_two_sweep_two_at_a_time(head, env):
    # The same grid one after another first, for the comparison (same machine, minutes apart).
    _, one_by_one = run_sweep(head, env, "seq", 1)
    out, wall = run_sweep(head, env, "grid", 2)
    sweep_dir = Path(out.stdout.strip().splitlines()[-1])
    sweep = sweep_records.read_sweep(sweep_dir)
    assert sweep["backend"] == "ray" and sweep["max_concurrent"] == 2 and sweep["status"] == "launched"
    assert [e["state"] for e in sweep["runs"]] == ["launched"] * 4

    done = [runs.load_run(e["run"]) for e in sweep["runs"]]
    assert all(r.state == "finished" for r in done), [r.status.get("error") for r in done]
    assert {(r.config["seed"], r.config["batch_size"]) for r in done} == {(0, 16), (0, 32), (1, 16), (1, 32)}
    assert most_at_once(done) == 2

    table = runs.runs_table(runs.list_runs())
    assert (table["sweep"] == sweep_dir.name).sum() == 4
    compared = sweep_compare.compare(sweep)
    assert compared["best"].sum() == 1
    best = compared[compared["best"]].iloc[0]
    assert best["val_loss"] == compared["val_loss"].min()
    names = [t.name for t in sweep_compare.comparison_figure(compared, ["seed", "batch_size"]).data]
    assert "best (lowest val loss)" in names
    assert "*" in out.stdout  # the printed comparison marks the best run

    record("sweep_one_by_one_wall_s", one_by_one, env)
    record("sweep_two_at_a_time_wall_s", wall, env)
    record("sweep_speedup_x", one_by_one / wall, env)


def test_the_train_page_launches_stops_and_sweeps_on_ray(head, env):
    from streamlit.testing.v1 import AppTest
    from test_train_page import PAGE, fill_form

    def page(more: str, sweep: str = "") -> AppTest:
        app = AppTest.from_file(PAGE, default_timeout=120).run()
        fill_form(app, env / "utk")
        fields = {w.label: w for w in app.text_input}
        fields["More keys"].set_value(more)
        fields["Ray address"].set_value(head)
        fields["Sweep (grid of runs)"].set_value(sweep)
        {w.label: w for w in app.number_input}["At once"].set_value(2)
        return app

    app = page("max_images=60 crop=none epochs=500 batch_size=4")
    next(b for b in app.button if b.label == "Launch").click().run()
    assert any("Launched" in s.value for s in app.success), [e.value for e in app.error]
    run_dir = Path(env / "runs" / app.session_state["watch"])
    status = runs.load_run(run_dir).status
    assert status["launcher"] == "ray" and status["ray_address"] == head and status["job_id"]
    wait_for(lambda: runs.load_run(run_dir).progress.get("steps_done", 0) >= 2, timeout=600)
    app.run()
    next(b for b in app.button if b.label == "Stop").click().run()
    launcher = launchers.launcher_for(run_dir)
    assert wait_for(lambda: finished(launcher, run_dir), timeout=300)["status"] == "stopped"

    app = page("max_images=60 crop=none", sweep="seed=0,1")
    next(b for b in app.button if b.label == "Launch sweep").click().run()
    assert any("Sweep" in s.value for s in app.success), [e.value for e in app.error]
    sweep_dir = env / "runs" / "sweeps" / app.session_state["sweep"]
    done = wait_for(
        lambda: (
            (s := sweep_records.read_sweep(sweep_dir))["status"] == "launched"
            and all(finished(launcher, Path(e["run"])) for e in s["runs"])
            and s
        )
    )
    assert sweep_records.read_sweep(sweep_dir)["backend"] == "ray"
    assert [runs.load_run(e["run"]).state for e in done["runs"]] == ["finished", "finished"]
    app.run()
    compare = next(f.value for f in app.dataframe if "best" in f.value.columns)
    assert compare["best"].sum() == 1 and set(compare["seed"]) == {0, 1}
