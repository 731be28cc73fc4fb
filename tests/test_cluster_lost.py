"""A Ray head killed under a training run leaves no orphan: the run's process notices its head is gone,
stops after its batch, and ends ``lost`` with a sentence naming the head; ``train resume=RUN`` then
finishes it on this machine from its last checkpoint.

Marked ``cluster``; skipped without ``ray``. The head is this test's own (``cluster.up``, 127.0.0.1,
free ports, its own temp dir); only its GCS is killed, found by that temp dir, and ``cluster.down``
stops the rest of it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cluster import short_temp_dir, without_venv_path
from test_runs import wait_for

from agelab import cluster, runs
from agelab.paths import PROJECT_ROOT
from agelab.processes import pid_alive
from agelab.training import checkpoints
from tests.real_data import real_images_fixture

pytestmark = pytest.mark.cluster
pytest.importorskip("ray", reason="ray is not installed: make test-cluster installs requirements-cluster.txt")

images = real_images_fixture(300, step=70)
EPOCHS = 40
# Tiny and quick per epoch, but with enough epochs that it still trains well after its head dies.
RUN = ["model=small_cnn", "weights=none", "image_size=48", f"epochs={EPOCHS}", "batch_size=32", "crop=none",
       "keep_checkpoints=2"]  # fmt: skip
# How long the process may outlive its head: the watch's grace (3 checks, 5 s apart), then the batch,
# the model's save and the test split's scoring (41 s measured). Longer is an orphan. Without the
# watch, Ray itself SIGKILLed the process 63 s after its GCS, unsaved: the sentence check fails then.
NO_ORPHAN_AFTER_S = 90


@pytest.fixture
def head(tmp_path):
    """A head as ``cluster up`` starts one, yielding its record; ``cluster down`` stops what is left."""
    record = tmp_path / "head"
    record.mkdir()
    state = cluster.up(cluster.free_port(), num_cpus=2, temp_dir=short_temp_dir("lost"), root=record)
    try:
        yield state
    finally:
        print(f"\nstopping the test head: {cluster.down(record)}", flush=True)


def agelab(args: list[str], env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "agelab", *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
        timeout=900,
    )  # fmt: skip
    assert out.returncode == 0, f"{args}: {out.stdout[-2000:]}{out.stderr[-3000:]}"
    return out.stdout


def gcs_server(temp_dir: str) -> int:
    """The pid of the head's GCS: the ``gcs_server`` process that names the head's temp dir."""
    table = cluster._processes()
    found = [
        pid
        for pid in cluster.head_processes(temp_dir, descendants=False)
        if pid in table and Path(table[pid][2][0]).name == "gcs_server"
    ]
    assert len(found) == 1, found
    return found[0]


def test_a_killed_head_leaves_no_orphan_and_the_lost_run_resumes(head, images, tmp_path):
    env = {**without_venv_path(), "AGELAB_RUNS_DIR": str(tmp_path / "runs")}
    env["AGELAB_CACHE_DIR"] = str(tmp_path / "cache")
    out = agelab(["runs", "submit", f"data={images}", *RUN, "--ray", head["address"]], env)
    run_dir = Path(out.strip().splitlines()[-1])
    wait_for(lambda: checkpoints.saved(run_dir), timeout=600)
    pid = runs.load_run(run_dir).status["pid"]
    assert runs.load_run(run_dir).state == "running" and pid_alive(pid)

    os.kill(gcs_server(head["temp_dir"]), signal.SIGKILL)
    killed = time.time()
    assert wait_for(lambda: not pid_alive(pid), timeout=NO_ORPHAN_AFTER_S, every=0.2)
    print(f"\nthe training process ended {time.time() - killed:.1f} s after its head's GCS was killed")

    run = runs.load_run(run_dir)
    assert run.state == "lost", run.status
    sentence = (
        r"the Ray head at 127\.0\.0\.1:(\d+) stopped answering at \d\d:\d\d:\d\d;"
        rf" resume with python -m agelab train resume={re.escape(run_dir.name)}"
    )
    assert re.fullmatch(sentence, run.status["error"]), run.status["error"]
    assert re.fullmatch(sentence, run.status["error"]).group(1) == head["gcs_address"].rsplit(":", 1)[1]
    done_before = len(run.history)
    assert 1 <= done_before < EPOCHS, "the run was not training when its head died"
    assert checkpoints.saved(run_dir)
    assert f"run lost: {run.status['error']}" in (run_dir / "log.txt").read_text()  # it ended itself
    listed = [row for row in agelab(["runs", "list"], env).splitlines() if run_dir.name in row]
    assert listed and "lost" in listed[0].split(), listed

    agelab(["train", f"resume={run_dir.name}"], env)
    run = runs.load_run(run_dir)
    assert run.state == "finished", run.status.get("error")
    assert run.status["launcher"] == "local" and len(run.history) == EPOCHS
    assert run.metrics["resumed_from_epoch"] >= done_before - 1
    print(f"resumed from epoch {run.metrics['resumed_from_epoch']}, finished with {len(run.history)} epochs")
