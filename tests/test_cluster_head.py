"""A Ray head as a newcomer starts one: by hand with ``.venv/bin/ray start --head`` from a shell where
the venv is not on PATH, or with the README's commands (``cluster up`` ... ``cluster down``), each on
127.0.0.1 with its own ports and temp dir. ``cluster down`` stops its own head and leaves the other.

Marked ``cluster``; skipped without ``ray`` (``make test-cluster`` installs it).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_cluster import short_temp_dir, without_venv_path
from test_runs import wait_for

from agelab import cluster, runs
from agelab.paths import PROJECT_ROOT
from tests.real_data import copy_real_images

pytestmark = pytest.mark.cluster
pytest.importorskip("ray", reason="ray is not installed: make test-cluster installs requirements-cluster.txt")


@pytest.fixture(scope="module")
def images(utkface_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("utk")
    copy_real_images(utkface_dir, folder, 120, step=150)
    return folder


@pytest.fixture(scope="module")
def hand_started_head():
    """``.venv/bin/ray start --head`` run by hand from a shell without the venv on PATH (so a job's
    ``python`` is the system's, or none); yields (address, temp dir); stopped by its temp dir."""
    temp = short_temp_dir("hand")
    port = cluster.free_port()
    command = [
        str(Path(sys.executable).parent / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1",
        "--port", str(cluster.free_port()), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(port),
        "--ray-client-server-port", str(cluster.free_port()), "--num-cpus", "1",
        "--disable-usage-stats", "--temp-dir", str(temp),
    ]  # fmt: skip
    env = {**without_venv_path(), **cluster.LOOPBACK_ENV}
    started = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    try:
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
        cluster.wait_for_head(f"http://127.0.0.1:{port}")
        yield f"127.0.0.1:{port}", temp
    finally:
        cluster.stop_head(temp)
        shutil.rmtree(temp, ignore_errors=True)


def agelab(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    out = subprocess.run(
        [sys.executable, "-m", "agelab", *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    assert out.returncode == 0, f"{args}: {out.stdout[-2000:]}{out.stderr[-3000:]}"
    return out


def test_a_job_runs_on_a_head_started_by_hand_without_the_venv_on_path(hand_started_head, images, tmp_path):
    address, temp = hand_started_head
    env = {**without_venv_path(), "AGELAB_RUNS_DIR": str(tmp_path / "runs")}
    env.pop("AGELAB_CACHE_DIR", None)  # the default: the project's cache, never Ray's temp folder
    out = agelab(
        ["runs", "submit", "recipe=baseline", "epochs=1", "max_images=60", "crop=none", f"data={images}",
         "--ray", address, "--watch"],
        env,
    )  # fmt: skip
    run_dir = Path(out.stdout.strip().splitlines()[0])
    run = runs.load_run(run_dir)
    assert run.state == "finished" and run.status["launcher"] == "ray", run.status.get("error")
    assert run.metrics["test_age_mae"] > 0
    # The uploaded package holds the code, not the weights, detectors, data or runs.
    packages = list(temp.glob("session_*/runtime_resources/working_dir_files/_ray_pkg_*"))
    assert packages and (packages[0] / "agelab" / "launchers.py").is_file()
    uploaded = [p.relative_to(packages[0]) for p in packages[0].rglob("*") if p.is_file()]
    assert not [p for p in uploaded if p.suffix in (".keras", ".tflite") or p.parts[0] in ("data", "runs")]
    # The index and split caches went to the project's data/cache, none under Ray's temp folder.
    assert not [p for p in temp.rglob("cache") if p.is_dir()]
    index_files = [p.name for p in (PROJECT_ROOT / "data" / "cache").rglob("*") if images.name in p.name]
    assert index_files, "no cache of the run's data in data/cache"


def readme_commands() -> list[str]:
    """The README's Cluster section's ``python -m agelab`` commands, in order, comments dropped."""
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Cluster\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [
        line.split("#", 1)[0].strip() for line in block.splitlines() if line.startswith("python -m agelab")
    ]


def test_the_readme_commands_run_a_job_stop_one_and_tear_down_only_their_head(
    hand_started_head, images, tmp_path
):
    commands = readme_commands()
    assert [c.split()[3:5] for c in commands] == [
        ["cluster", "up"], ["runs", "submit"], ["runs", "submit"], ["runs", "stop"], ["cluster", "down"],
    ]  # fmt: skip
    other_head = cluster.head_processes(hand_started_head[1], descendants=False)  # GCS, raylet, dashboard
    # The README's head is on 8265; the test's takes a free port and its own temp dir instead.
    port, temp = cluster.free_port(), short_temp_dir("readme")
    env = {**without_venv_path(), "AGELAB_RUNS_DIR": str(tmp_path / "runs")}
    record = tmp_path / "runs" / cluster.STATE_FILE
    try:
        for command in commands:
            args = shlex.split(command.replace("8265", str(port)))[3:]
            if args[:2] == ["cluster", "up"]:
                args += ["--dashboard-port", str(port), "--temp-dir", str(temp), "--num-cpus", "2"]
            if args[:2] == ["runs", "submit"]:
                args.insert(2, f"data={images}")
            if args[:2] == ["runs", "stop"]:
                long_run = tmp_path / "runs" / args[2]
                wait_for(
                    lambda run=long_run: runs.load_run(run).progress.get("steps_done", 0) >= 2, timeout=600
                )
            out = agelab(args, env)
            if args[:2] == ["cluster", "up"]:
                state = json.loads(record.read_text())
                assert state["address"] == f"http://127.0.0.1:{port}" and state["temp_dir"] == str(temp)
                assert set(state["pids"]) <= set(cluster.head_processes(temp)) and state["pids"]
                assert json.loads(agelab(["cluster", "status"], env).stdout)["running"] is True
            if "--watch" in args:
                assert runs.load_run(out.stdout.splitlines()[0]).state == "finished"
            if args[:2] == ["runs", "stop"]:
                assert out.stdout.strip() == f"{args[2]}: stopping"
                done = wait_for(lambda run=long_run: runs.load_run(run).state not in runs.ACTIVE, timeout=300)
                assert done and runs.load_run(long_run).state == "stopped"
        assert not record.exists() and not cluster.head_processes(temp) and not temp.exists()
        assert json.loads(agelab(["cluster", "status"], env).stdout)["running"] is False
        # The head started by hand beside it is untouched.
        assert other_head and set(other_head) <= set(cluster.head_processes(hand_started_head[1]))
    finally:
        cluster.stop_head(temp)
