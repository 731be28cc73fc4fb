"""Hardening: run states that tell the truth. A diverged run fails saying so, a stop during
feature extraction is a stop, a full disk is named, and a killed run's disk cache does not stay."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from agelab import runs
from agelab.commands import train as train_command
from agelab.config import resolve_data
from agelab.pipeline import remove_orphan_caches
from agelab.training import stages
from agelab.training import verb as training
from tests.fault_helpers import fill, small_tmpfs
from tests.real_data import copy_real_images, real_images_fixture

TINY = {
    "model": "small_cnn",
    "weights": "none",
    "image_size": 64,
    "epochs": 1,
    "batch_size": 8,
    "crop": "none",
}


small_data = real_images_fixture(60, step=300)


def test_a_run_whose_loss_becomes_nan_fails_saying_so(small_data, isolated_dirs, monkeypatch):
    compile_model = stages.compile_model

    def diverging(model, learning_rate, config, total_steps=0, ranges=False):  # no network survives it
        compile_model(model, 1e30, config, total_steps, ranges)

    monkeypatch.setattr(stages, "compile_model", diverging)
    with pytest.raises(training.TrainingFailed, match="loss became NaN at epoch 1"):
        training.train({**TINY, "data": str(small_data), "name": "nan"})
    (run,) = runs.list_runs()
    assert run.state == "failed" and run.status["error"].startswith("loss became NaN at epoch 1")
    assert "Traceback" not in run.status["error"] and "learning_rate" in run.status["error"]
    assert not (run.path / "model.keras").exists() and not run.metrics  # nothing for Predict to offer


def test_a_stop_during_feature_extraction_is_recorded_as_stopped(utkface_dir, isolated_dirs, tmp_path):
    data = tmp_path / "utk"
    copy_real_images(utkface_dir, data, 700, step=30)  # 6 batches of 128: progress at the 5th, then a stop
    config = {"data": str(data), "fast": True, "crop": "none", "name": "stopfeat", "epochs": 1}
    run_dir = runs.create_run(resolve_data(training.build_config(config)))

    def stop_when_extracting() -> None:
        deadline = time.time() + 300
        while time.time() < deadline:
            if runs.read_run_file(run_dir / "progress.json", []).get("stage") == "features":
                os.kill(os.getpid(), signal.SIGTERM)  # what the Stop button sends
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=stop_when_extracting, daemon=True)
    watcher.start()
    training.train(config, run_dir)
    watcher.join(5)
    run = runs.load_run(run_dir)
    assert run.state == "stopped", run.status
    assert "error" not in run.status and "no model saved" in run.status["note"]


@pytest.fixture
def full_disk(tmp_path):
    """A 1 MB tmpfs; the test fills it when it needs a full disk. Mounting it needs root, so every test
    using it is marked ``privileged``."""
    with small_tmpfs(tmp_path / "small") as mount:
        yield mount


@pytest.mark.privileged
def test_a_full_disk_fails_the_run_naming_the_cause(small_data, isolated_dirs, full_disk, monkeypatch):
    monkeypatch.setenv("AGELAB_RUNS_DIR", str(full_disk))
    config = resolve_data(training.build_config({**TINY, "data": str(small_data)}))
    run_dir = runs.create_run(config)
    fill(full_disk)
    # A launched run's output goes to its log, on the same full disk.
    log = open(run_dir / "log.txt", "a")  # noqa: SIM115 (its close fails too: the disk is full)
    try:
        with monkeypatch.context() as scoped:
            scoped.setattr(sys, "stdout", log)
            scoped.setattr(sys, "stderr", log)
            with pytest.raises(training.TrainingFailed, match="disk is full"):
                training.train(config, run_dir)
    finally:
        with contextlib.suppress(OSError):
            log.close()
    run = runs.load_run(run_dir)
    assert run.state == "failed" and "the disk is full" in run.status["error"], run.status
    assert "Traceback" not in run.status["error"] and run.status.get("ended")


@pytest.mark.privileged
def test_a_full_disk_at_launch_is_one_sentence_and_leaves_no_folder(
    small_data, full_disk, monkeypatch, capsys
):
    monkeypatch.setenv("AGELAB_RUNS_DIR", str(full_disk))
    fill(full_disk)
    assert train_command.cli([f"data={small_data}", "model=small_cnn", "name=full"]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]


def test_orphan_disk_caches_of_dead_runs_are_removed_on_the_next_start(isolated_dirs):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    root = isolated_dirs / "cache" / "tfdata"
    orphan, alive = root / f"run{dead.pid}-abc", root / f"run{os.getppid()}-def"
    for folder in (orphan, alive):
        folder.mkdir(parents=True)
        (folder / "train.data-00000-of-00001").write_bytes(b"\0" * 1000)
    assert remove_orphan_caches() == [orphan]
    assert not orphan.exists() and alive.exists()


@pytest.mark.privileged
def test_evaluate_onto_a_full_disk_prints_the_metrics_and_names_the_cause(
    utkface_dir, tmp_path, full_disk, capsys
):
    from agelab.bins import get_scheme
    from agelab.commands import evaluate
    from agelab.model_files import save_model
    from agelab.models import create_model

    scheme = get_scheme("groups10")
    built = create_model("small_cnn", 64, scheme.num_bins, weights="none", age_head="dex")
    model = save_model(built.model, tmp_path / "tiny.keras", {"bins": scheme.spec, "image_size": 64})
    data = copy_real_images(utkface_dir, tmp_path / "utk", 3, step=5000)[0].parent
    fill(full_disk)
    out = full_disk / "predictions.parquet"
    assert evaluate.cli(["--model", str(model), "--data", str(data), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip())
    assert summary["n"] == 3 and summary["out"] is None
    assert "No space left on device" in captured.err and "Traceback" not in captured.err
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]  # no half-written table


@pytest.mark.privileged
def test_index_with_its_cache_on_a_full_disk_still_answers(
    utkface_dir, tmp_path, full_disk, monkeypatch, capsys
):
    from agelab.commands.index import cli

    data = copy_real_images(utkface_dir, tmp_path / "utk", 5, step=4000)[0].parent
    monkeypatch.setenv("AGELAB_CACHE_DIR", str(full_disk))
    fill(full_disk)
    assert cli(["--data", str(data)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip().splitlines()[-1])["valid"] == 5
    assert "not saved (No space left on device)" in captured.err and "Traceback" not in captured.err
