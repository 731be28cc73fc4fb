"""Run folders and processes: numbering, launch, graceful stop, kill, a dead run, delete."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agelab import run_status, runs
from agelab.config import ConfigError, build_config
from agelab.launchers import LocalLauncher
from agelab.processes import identity, pid_alive
from tests.real_data import real_images_fixture

SLOW_RUN = {"model": "baseline_cnn", "weights": "none", "image_size": 64, "epochs": 200, "batch_size": 8}


small_data = real_images_fixture(200, step=90)


def wait_for(predicate, timeout: float = 240.0, every: float = 0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s")


def batches_done(run_dir: Path) -> bool:
    return runs.load_run(run_dir).progress.get("steps_done", 0) >= 2


def test_runs_number_themselves(isolated_dirs):
    config = build_config({"name": "exp"})
    made = [runs.create_run(config) for _ in range(3)]
    assert [p.name for p in made] == ["exp-1", "exp-2", "exp-3"]
    assert all(runs.load_run(p).state == "queued" for p in made)
    assert not list(isolated_dirs.rglob("*.tmp"))


def test_launch_rejects_a_bad_config_without_a_folder(isolated_dirs, small_data):
    with pytest.raises(ConfigError, match="Did you mean 'epochs'"):
        LocalLauncher().submit({"epoch": 2, "data": str(small_data)})
    with pytest.raises(ConfigError, match="no such folder"):
        LocalLauncher().submit({"data": str(isolated_dirs / "nowhere")})
    assert runs.list_runs() == []


def test_graceful_stop_saves_and_marks_stopped(isolated_dirs, small_data):
    run_dir = LocalLauncher().submit({**SLOW_RUN, "data": str(small_data), "name": "stop"})
    wait_for(lambda: batches_done(run_dir))
    assert LocalLauncher().stop(run_dir) == "stopping"
    run = wait_for(lambda: (r := runs.load_run(run_dir)).state not in run_status.ACTIVE and r, timeout=120)
    assert run.state == "stopped", run.log()
    assert run.metrics["stopped"] is True
    assert (run_dir / "model.keras").exists() and (run_dir / "predictions.parquet").exists()
    assert "stop requested" in run.log()
    # The epoch the stop cut short is no epoch: not in the history, counted apart, no validation pass.
    partial = run.metrics["partial_epoch"]
    assert 1 <= partial["batches"] <= partial["of"]  # the stop may come with an epoch's last batch
    assert len(run.history) == run.metrics["epochs_completed"]
    assert "that partial epoch is not recorded" in run.log()
    # Launched with --log-redirected: its output reaches log.txt once, not copied there again.
    assert (run_dir / "log.txt").read_text().count(f"run {run_dir} on ") == 1
    assert LocalLauncher().stop(run_dir) == "not running"


def test_a_stop_request_in_the_folder_stops_the_run_without_a_signal(isolated_dirs, small_data):
    """What a run whose launcher cannot reach it gets: only ``stop_requested`` in its status.json."""
    run_dir = LocalLauncher().submit({**SLOW_RUN, "data": str(small_data), "name": "asked"})
    wait_for(lambda: batches_done(run_dir))
    run_status.write_status(run_dir, stop_requested=time.time())
    run = wait_for(lambda: (r := runs.load_run(run_dir)).state not in run_status.ACTIVE and r, timeout=120)
    assert run.state == "stopped" and run.metrics["stopped"] is True, run.log()
    assert "stop requested in the run folder" in run.log() and "stop requested: finishing" not in run.log()
    assert 1 <= run.metrics["partial_epoch"]["batches"] <= run.metrics["partial_epoch"]["of"]


def test_second_stop_kills(isolated_dirs, small_data):
    run_dir = LocalLauncher().submit({**SLOW_RUN, "data": str(small_data), "name": "kill"})
    wait_for(lambda: batches_done(run_dir))
    pid = runs.load_run(run_dir).status["pid"]
    assert LocalLauncher().stop(run_dir) == "stopping"
    assert LocalLauncher().stop(run_dir) == "killed"
    wait_for(lambda: not pid_alive(pid), timeout=30)
    run = runs.load_run(run_dir)
    assert run.state == "stopped" and run.status["killed"] is True


def test_a_killed_process_shows_as_lost_with_its_log(isolated_dirs, small_data):
    run_dir = LocalLauncher().submit({**SLOW_RUN, "data": str(small_data), "name": "dead"})
    wait_for(lambda: batches_done(run_dir))
    pid = runs.load_run(run_dir).status["pid"]
    os.killpg(pid, signal.SIGKILL)
    run = wait_for(lambda: (r := runs.load_run(run_dir)).state == "lost" and r, timeout=30)
    assert f"process {pid} ended without finishing" in run.status["error"]
    assert "epoch" in run.status["error"] or "model baseline_cnn" in run.status["error"]  # the log tail
    assert LocalLauncher().stop(run_dir) == "not running"


def test_a_stale_heartbeat_with_a_pid_not_the_runs_own_means_lost(isolated_dirs):
    run_dir = runs.create_run(build_config({"name": "stale"}))
    # A live process (this one, no agelab train) named by a run that stopped beating long ago.
    run_status.write_status(
        run_dir, status="running", pid=os.getpid(), heartbeat=time.time() - 3600, started=time.time()
    )
    (run_dir / "log.txt").write_text("epoch 1 done\nhung here\n")
    run = runs.load_run(run_dir)
    assert run.state == "lost" and "no heartbeat for 3600 s" in run.status["error"]
    assert "not an agelab train process" in run.status["error"] and "hung here" in run.status["error"]
    # Fresh, the same pid is not judged yet: the heartbeat says the run lives.
    run_status.write_status(run_dir, heartbeat=time.time())
    assert runs.load_run(run_dir).state == "running"


def test_a_run_whose_own_process_lives_is_running_whatever_its_heartbeat(isolated_dirs):
    own = subprocess.Popen(["sleep", "300"])
    try:
        run_dir = runs.create_run(build_config({"name": "quiet"}))
        run_status.write_status(
            run_dir, status="running", pid=own.pid, process=identity(own.pid), heartbeat=time.time() - 3600
        )
        assert runs.load_run(run_dir).state == "running"
    finally:
        own.kill()
        own.wait()
    assert runs.load_run(run_dir).state == "lost"


def test_a_run_on_another_host_is_lost_only_when_its_heartbeat_is_stale(isolated_dirs):
    run_dir = runs.create_run(build_config({"name": "far"}))
    run_status.write_status(run_dir, status="running", pid=1, host="elsewhere", heartbeat=time.time() - 10)
    assert runs.load_run(run_dir).state == "running"
    run_status.write_status(run_dir, heartbeat=time.time() - 2 * run_status.HEARTBEAT_STALE_S)
    assert runs.load_run(run_dir).state == "lost"
    out = subprocess.run(
        [sys.executable, "-m", "agelab", "runs", "list"], capture_output=True, text=True, timeout=120,
        env=dict(os.environ),
    )  # fmt: skip
    assert re.search(r"far-1\s+lost", out.stdout), out.stdout


def test_delete_refuses_a_running_run_and_removes_a_finished_one(isolated_dirs):
    run_dir = runs.create_run(build_config({"name": "del"}))
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run_status.write_status(run_dir, status="running", pid=sleeper.pid, heartbeat=time.time())
        with pytest.raises(RuntimeError, match="stop it before deleting"):
            runs.delete_run(run_dir)
    finally:
        sleeper.kill()
        sleeper.wait()
    run_status.write_status(run_dir, status="finished")
    runs.delete_run(run_dir)
    assert not run_dir.exists()
    with pytest.raises(ValueError, match="not a run folder"):
        runs.delete_run(isolated_dirs)


def test_runs_scored_on_different_test_sets_are_flagged(isolated_dirs):
    import json

    made = [runs.create_run(build_config({"name": name})) for name in ("a", "b", "c")]
    for path, test_set, n in zip(made, ("1f2e3d4c5b6a", "1f2e3d4c5b6a", "99aa88bb77cc"), (3228, 3228, 4616)):
        (path / "metrics.json").write_text(
            json.dumps({"scored_on": test_set, "n_test": n, "test_age_mae": 5.0})
        )
    table = runs.runs_table([runs.load_run(p) for p in made])
    assert runs.test_set_warning(table.iloc[[0, 1]]) is None  # one test set: comparable
    warning = runs.test_set_warning(table)
    assert "a-1, b-1 on 3,228 images; c-1 on 4,616 images" in warning and "evaluate --model" in warning


def test_a_runs_test_scores_read_in_words(isolated_dirs):
    import json

    from agelab.run_display import test_scores_text

    path = runs.create_run(build_config({"name": "words"}))
    (path / "metrics.json").write_text(
        json.dumps(
            {
                "test_bin_accuracy": 0.6231,
                "test_within_one_bin": 0.9628,
                "test_age_mae": 4.468,
                "test_gender_accuracy": 0.9433,
                "n_test": 3228,
            }
        )  # fmt: skip
    )
    text = test_scores_text(runs.load_run(path).metrics)
    assert (
        text
        == "test split (3,228 faces): exact group 62.3 %, within one 96.3 %, age MAE 4.47 years, gender 94.3 %"
    )
    assert "test_" not in text and test_scores_text({}) == ""
