"""Stop and Kill signal only the run's own process: a positive pid on this host whose start time (or,
for a run started by hand, whose command line) still matches what was recorded at launch. A status
file naming any other pid gets a sentence saying so, and nothing is signalled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from agelab import launchers, processes, run_status, runs
from agelab.config import build_config
from agelab.paths import PROJECT_ROOT


@pytest.fixture
def bystander():
    """A process that belongs to nobody's run: ``sleep``, started by this test and ended by it."""
    process = subprocess.Popen(["sleep", "300"])
    yield process
    process.kill()
    process.wait()


@pytest.fixture
def signals_sent(monkeypatch):
    """Every signal Stop sends, recorded; one to a pid of 0 or below (a process group: -1 is every
    process this user may signal) is recorded and not sent, so that a regression cannot take the
    machine down with it."""
    sent: list[tuple[str, int, int]] = []
    real_kill, real_killpg = os.kill, os.killpg

    def kill(pid, sig):
        sent.append(("kill", pid, sig))
        if pid > 0:
            real_kill(pid, sig)

    def killpg(pgid, sig):
        sent.append(("killpg", pgid, sig))
        if pgid > 0:
            real_killpg(pgid, sig)

    monkeypatch.setattr(os, "kill", kill)
    monkeypatch.setattr(os, "killpg", killpg)
    return sent


def running_run(name: str, **status) -> runs.Run:
    """A run folder whose status says it is running now, with ``status`` on top."""
    run_dir = runs.create_run(build_config({"name": name}))
    now = time.time()
    run_status.write_status(run_dir, status="running", started=now, heartbeat=now, **status)
    return run_dir


def still_running(process: subprocess.Popen) -> bool:
    return process.poll() is None and processes.pid_alive(process.pid)


@pytest.mark.parametrize("pid", [-1, 0, "abc", 2.5, True])
def test_stop_and_kill_signal_nothing_for_a_pid_that_is_no_process(isolated_dirs, signals_sent, pid):
    run_dir = running_run("forged", pid=pid)
    for _ in ("Stop", "Kill"):
        with pytest.raises(
            launchers.LaunchError, match=r"not signalled: its status.json names no valid process id"
        ):
            launchers.LocalLauncher().stop(run_dir)
        run_status.write_status(run_dir, stop_requested=time.time())  # what a first Stop would have left
    assert [s for s in signals_sent if s[2] != 0] == []


def test_stop_and_kill_leave_an_unrelated_process_alone(isolated_dirs, bystander, signals_sent):
    run_dir = running_run("stolen", pid=bystander.pid)
    with pytest.raises(
        launchers.LaunchError, match=rf"process {bystander.pid} is not an agelab train process"
    ):
        launchers.LocalLauncher().stop(run_dir)
    run_status.write_status(run_dir, stop_requested=time.time())
    with pytest.raises(launchers.LaunchError, match="not signalled"):
        launchers.LocalLauncher().stop(run_dir)
    assert still_running(bystander)
    assert [s for s in signals_sent if s[2] != 0] == []
    assert runs.load_run(run_dir).status.get("killed") is None  # not recorded as killed either


def test_a_recorded_start_time_that_no_longer_matches_is_not_signalled(
    isolated_dirs, bystander, signals_sent
):
    """The pid was reused: the process there now started at another time than the one launched."""
    launched = processes.identity(bystander.pid)
    launched["start_ticks"] -= 1
    run_dir = running_run("reused", pid=bystander.pid, process=launched)
    with pytest.raises(launchers.LaunchError, match="not the one launched for it"):
        launchers.LocalLauncher().stop(run_dir)
    assert still_running(bystander) and [s for s in signals_sent if s[2] != 0] == []


def test_a_run_on_another_host_is_not_signalled(isolated_dirs, bystander, signals_sent):
    run_dir = running_run("elsewhere", pid=bystander.pid, host="other-machine")
    with pytest.raises(launchers.LaunchError, match="runs on other-machine"):
        launchers.LocalLauncher().stop(run_dir)
    assert still_running(bystander)


def test_the_process_recorded_at_launch_is_stopped_then_killed(isolated_dirs, signals_sent):
    """The run's own process (its identity recorded as the launcher records it) gets SIGTERM, then
    SIGKILL: the check lets the real one through."""
    own = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        run_dir = running_run("own", pid=own.pid, process=processes.identity(own.pid))
        assert launchers.LocalLauncher().stop(run_dir) == "stopping"
        assert own.wait(timeout=30) == -signal.SIGTERM
    finally:
        own.kill()
        own.wait()
    again = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        run_dir = running_run("own2", pid=again.pid, process=processes.identity(again.pid))
        run_status.write_status(run_dir, stop_requested=time.time())
        assert launchers.LocalLauncher().stop(run_dir) == "killed"
        assert again.wait(timeout=30) == -signal.SIGKILL
        assert ("killpg", again.pid, signal.SIGKILL) in signals_sent  # its whole group
    finally:
        again.kill()
        again.wait()


def runs_stop_verb(run_dir: Path, isolated_dirs: Path) -> subprocess.CompletedProcess:
    """``python -m agelab runs stop`` on ``run_dir`` in its own process, as a user types it."""
    return subprocess.run(
        [sys.executable, "-m", "agelab", "runs", "stop", run_dir.name],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120,
        env=dict(os.environ, AGELAB_RUNS_DIR=str(isolated_dirs / "runs")),
    )  # fmt: skip


def test_the_runs_verb_says_why_it_did_not_stop_a_run(isolated_dirs, bystander):
    run_dir = running_run("verb", pid=bystander.pid)
    done = runs_stop_verb(run_dir, isolated_dirs)
    assert done.returncode == 2, done.stderr
    assert "not signalled" in done.stderr and "Traceback" not in done.stderr
    assert still_running(bystander)


def test_the_train_page_stop_button_says_why_and_signals_nothing(isolated_dirs, bystander):
    running_run("page", pid=bystander.pid)
    app = AppTest.from_file(str(PROJECT_ROOT / "pages" / "train.py"), default_timeout=60).run()
    assert not app.exception, app.exception
    next(b for b in app.button if b.label == "Stop").click().run()
    assert not app.exception, app.exception
    assert any("not signalled" in e.value for e in app.error), [e.value for e in app.error]
    assert still_running(bystander)


def test_a_ray_run_whose_cluster_is_gone_is_stopped_through_its_own_pid_here(isolated_dirs, signals_sent):
    """The Ray head died and the run lives on: Stop cannot reach Ray, so it signals the run's own
    process on this host (the request is in the run's folder as well)."""
    pytest.importorskip("ray", reason="needs ray (requirements-cluster.txt) for a Ray launcher")
    own = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        run_dir = running_run(
            "orphan",
            pid=own.pid,
            process=processes.identity(own.pid),
            launcher="ray",
            job_id="agelab-orphan-1-abc",
            ray_address="http://127.0.0.1:9",
        )
        said = launchers.launcher_for(run_dir).stop(run_dir)
        assert said.startswith("stopping: Ray at http://127.0.0.1:9 cannot be reached")
        assert f"its process {own.pid} here was sent SIGTERM" in said
        assert own.wait(timeout=30) == -signal.SIGTERM
        assert runs.load_run(run_dir).status["stop_requested"] > 0
    finally:
        own.kill()
        own.wait()


def test_a_ray_run_elsewhere_whose_cluster_is_gone_is_asked_through_its_folder(isolated_dirs, signals_sent):
    pytest.importorskip("ray", reason="needs ray (requirements-cluster.txt) for a Ray launcher")
    run_dir = running_run(
        "far", pid=4242, host="worker-7", launcher="ray", job_id="agelab-far-1-abc", ray_address="127.0.0.1:9"
    )
    done = runs_stop_verb(run_dir, isolated_dirs)
    assert done.returncode == 0, done.stderr
    assert "it runs on worker-7" in done.stdout and "as its folder asks" in done.stdout
    assert runs.load_run(run_dir).status["stop_requested"] > 0
    assert [s for s in signals_sent if s[2] != 0] == []
