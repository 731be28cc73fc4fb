"""Checkpoints and resume, on real training: a run killed with SIGKILL is lost; ``train resume=RUN``
continues it from its last checkpoint, in its own folder, to the result of a run never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agelab import run_status, runs
from agelab.config import ConfigError, build_config
from agelab.paths import PROJECT_ROOT
from agelab.training import checkpoints
from agelab.training.resume import resumable_run, resume_config
from tests.real_data import real_images_fixture

small_data = real_images_fixture(300, step=70)

# Tiny and quick; augmentation on, dropout on: their random draws must go on after a resume as well.
RUN = ["model=small_cnn", "weights=none", "image_size=48", "epochs=5", "batch_size=32", "crop=none",
       "keep_checkpoints=2", "dropout=0.3"]  # fmt: skip
# The run in a process with TensorFlow's op determinism on, so that two runs of one seed can be compared
# to the bit; what resume needs of determinism is only this, in the test.
DETERMINISTIC = (
    "import sys, tensorflow as tf; tf.config.experimental.enable_op_determinism();"
    " from agelab.commands.train import cli; sys.exit(cli(sys.argv[1:]))"
)


def train_process(*args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", DETERMINISTIC, *args], cwd=PROJECT_ROOT, env=dict(os.environ),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen,
    )  # fmt: skip


def finished(process: subprocess.Popen) -> Path:
    out, _ = process.communicate(timeout=900)
    assert process.returncode == 0, out[-3000:]
    return Path(out.strip().splitlines()[-1])


def wait_for_checkpoint(
    run_root: Path, name: str, epoch: int, process: subprocess.Popen | None = None
) -> Path:
    deadline = time.time() + 600
    while time.time() < deadline:
        assert process is None or process.poll() is None, process.communicate()[0][-3000:]
        found = [p for p in (run_root / name).glob("checkpoints/epoch-*.npz")]
        if any(int(p.stem.split("-")[1]) >= epoch for p in found):
            return run_root / name
        time.sleep(0.2)
    raise AssertionError(f"no checkpoint of epoch {epoch} in 600 s")


def probabilities(run_dir: Path) -> np.ndarray:
    predictions = pd.read_parquet(run_dir / "predictions.parquet").sort_values("path")
    columns = [c for c in predictions.columns if c.startswith("bin_prob_")] + ["prob_female"]
    return predictions[columns].to_numpy(dtype=float)


@pytest.mark.slow
def test_a_killed_run_is_lost_then_resumed_to_the_uninterrupted_result(small_data, isolated_dirs):
    root = isolated_dirs / "runs"
    whole = train_process(f"data={small_data}", "name=whole", *RUN)
    whole_dir = finished(whole)
    assert not (whole_dir / "checkpoints").exists()  # a finished run has its model; checkpoints go

    killed = train_process(f"data={small_data}", "name=cut", *RUN, start_new_session=True)
    run_dir = wait_for_checkpoint(root, "cut-1", 2, killed)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=60)
    run = runs.load_run(run_dir)
    assert run.state == "lost", run.status
    assert "ended without finishing" in run.status["error"]
    assert runs.runs_table([run]).loc[0, "status"] == "lost"
    kept = checkpoints.saved(run_dir)
    assert 1 <= len(kept) <= 2 and not list(run_dir.rglob("*.tmp"))
    last = checkpoints.load(kept[-1])
    assert last.epoch < 5  # killed mid-run: epochs are left to resume
    steps = last.state["recorder"]["history"][0]["steps"]
    # The optimizer's step count (its first variable) is every batch of every finished epoch.
    assert int(last.optimizer[0]) == last.epoch * steps and last.state["stage"] == "train"

    resumed = train_process(f"resume={run_dir.name}")
    assert finished(resumed) == run_dir
    run = runs.load_run(run_dir)
    assert run.state == "finished" and run.status["resumed"][0]["from_epoch"] == last.epoch
    assert "error" not in run.status and "ended without finishing" not in json.dumps(run.status)
    assert list(run.history["epoch"]) == [1, 2, 3, 4, 5] and run.metrics["resumed_from_epoch"] == last.epoch
    assert f"resumed from {kept[-1].name}" in run.log()

    # Against the run never interrupted: the same epochs, the same test predictions.
    same = runs.load_run(whole_dir)
    numeric = [c for c in run.history.columns if c not in ("stage", "seconds", "images_per_s")]
    history_gap = (run.history[numeric] - same.history[numeric]).abs().max().max()
    probability_gap = np.abs(probabilities(run_dir) - probabilities(whole_dir)).max()
    print(
        f"resume against uninterrupted: history max gap {history_gap:.3g}, probabilities {probability_gap:.3g}"
    )
    assert history_gap == 0 and probability_gap == 0
    for key in ("test_bin_accuracy", "test_age_mae", "test_gender_accuracy"):
        assert run.metrics[key] == same.metrics[key]


def test_resume_says_why_a_run_cannot_be_resumed(isolated_dirs):
    made = {
        state: runs.create_run(build_config({"name": state})) for state in ("finished", "running", "bare")
    }
    run_status.write_status(made["finished"], status="finished")
    run_status.write_status(made["running"], status="running", pid=os.getpid(), heartbeat=time.time())
    run_status.write_status(made["bare"], status="stopped")
    with pytest.raises(ConfigError, match="finished: there is nothing to resume"):
        resumable_run("finished-1")
    with pytest.raises(ConfigError, match="still running; stop it before resuming"):
        resumable_run(str(made["running"]))
    with pytest.raises(ConfigError, match="no checkpoint to resume from"):
        resumable_run("bare-1")
    with pytest.raises(ConfigError, match="resume='nowhere': no such run"):
        resumable_run("nowhere")
    # Resources may change; what the run learns may not.
    assert resume_config(made["bare"], {"threads": "2"})["threads"] == 2
    with pytest.raises(
        ConfigError, match=r"bad key epochs='9' with resume: .* \(epochs=8\); only keep_checkpoints"
    ):
        resume_config(made["bare"], {"epochs": "9"})


def test_the_train_verb_refuses_a_resume_with_another_config(isolated_dirs):
    run_dir = runs.create_run(build_config({"name": "refuse"}))
    run_status.write_status(run_dir, status="failed")
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "epoch-0001.npz").write_bytes(b"")
    done = subprocess.run(
        [sys.executable, "-m", "agelab", "train", f"resume={run_dir.name}", "learning_rate=0.1"],
        capture_output=True, text=True, cwd=PROJECT_ROOT, env=dict(os.environ), timeout=300,
    )  # fmt: skip
    assert done.returncode == 2
    assert "learning_rate='0.1' with resume: a resumed run goes on with its own saved config" in done.stderr


def test_the_train_page_shows_a_lost_run_and_resumes_it(small_data, isolated_dirs):
    from streamlit.testing.v1 import AppTest

    from agelab.launchers import LocalLauncher

    config = dict(item.split("=", 1) for item in RUN)
    run_dir = LocalLauncher().submit({**config, "epochs": 4, "data": str(small_data), "name": "page"})
    wait_for_checkpoint(run_dir.parent, run_dir.name, 1)
    os.killpg(runs.load_run(run_dir).status["pid"], signal.SIGKILL)
    deadline = time.time() + 30
    while runs.load_run(run_dir).state != "lost" and time.time() < deadline:
        time.sleep(0.2)

    app = AppTest.from_file(str(PROJECT_ROOT / "pages" / "train.py"), default_timeout=60).run()
    assert not app.exception
    assert any("`lost`" in m.value for m in app.markdown)
    assert any("The run was lost: its process" in w.value for w in app.warning)
    app.button(key="resume-page-1").click().run()
    assert not app.exception and not app.error
    deadline = time.time() + 600
    while runs.load_run(run_dir).state in (*run_status.ACTIVE, "lost") and time.time() < deadline:
        time.sleep(0.5)
    run = runs.load_run(run_dir)
    assert run.state == "finished", run.log()
    assert run.status["launcher"] == "local" and run.status["resumed"][0]["from_epoch"] >= 1
    assert list(run.history["epoch"]) == [1, 2, 3, 4]
    app.run()
    assert any("`finished`" in m.value for m in app.markdown)
    assert not [b for b in app.button if b.key == "resume-page-1"]  # a finished run is not resumed
