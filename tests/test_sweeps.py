"""Sweeps: the grid, the queue under a concurrency limit, stopping, the comparison, the verb and the
Train page's sweep view. A sweep on a real Ray head is in test_cluster.py; a local one that trains
is marked slow."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from agelab import atomic, run_status, runs, sweep_compare, sweep_records, sweeps
from agelab.config import ConfigError
from agelab.paths import PROJECT_ROOT
from agelab.processes import identity
from tests.real_data import real_images_fixture

TINY = {
    "model": "baseline_cnn",
    "weights": "none",
    "image_size": 64,
    "epochs": 1,
    "max_images": 60,
    "crop": "none",
}


data = real_images_fixture(80, step=200)


def test_the_grid_splits_lists_and_keeps_single_values_fixed():
    grid, fixed = sweeps.parse_grid(
        [
            "epochs=1,2",
            "bins=groups10,decades",
            "model=baseline_cnn",
            "learning_rate=0.001|0.0003",
            "seed=3,3",
        ]
    )
    assert grid == {
        "epochs": ["1", "2"],
        "bins": ["groups10", "decades"],
        "learning_rate": ["0.001", "0.0003"],
    }
    assert fixed == {"model": "baseline_cnn", "seed": "3"}
    # Custom edges are one scheme; | lists several.
    assert sweeps.parse_grid(["bins=0,3,13,20"]) == ({}, {"bins": "0,3,13,20"})
    assert sweeps.parse_grid(["bins=0,3,13,20|groups10"])[0] == {"bins": ["0,3,13,20", "groups10"]}
    with pytest.raises(ConfigError, match="empty value"):
        sweeps.parse_grid(["epochs=1,,2"])
    with pytest.raises(ConfigError, match="Did you mean 'epochs'"):
        sweeps.parse_grid(["epoch=1,2"])


def test_a_combination_that_cannot_run_rejects_the_whole_sweep(isolated_dirs, data):
    with pytest.raises(
        ConfigError, match=r"sweep run 2 \(weights=imagenet\): .*baseline_cnn has no pretrained"
    ):
        sweeps.create_sweep({"weights": ["none", "imagenet"]}, {**TINY, "data": str(data)})
    assert sweeps.list_sweeps() == [] and runs.list_runs() == []


class TimedLauncher:
    """A backend whose runs are busy for ``seconds``: the queue's logic on its own, fast."""

    name = "timed"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.active_at_submit: list[int] = []
        self.ends: dict[str, float] = {}

    def _active(self) -> int:
        return sum(end > time.time() for end in self.ends.values())

    def submit(self, config, root=None, **fields):
        self.active_at_submit.append(self._active())
        run_dir = runs.create_run(config, root)
        run_status.write_status(run_dir, launcher=self.name, **fields)
        self.ends[str(run_dir)] = time.time() + self.seconds
        return run_dir

    def status(self, run_dir):
        return {"status": "running" if self.ends[str(run_dir)] > time.time() else "finished"}

    def stop(self, run_dir):
        self.ends[str(run_dir)] = 0
        return "stopping"


def test_the_queue_keeps_to_the_limit_and_launches_every_run(isolated_dirs, data):
    sweep_dir = sweeps.create_sweep(
        {"seed": ["0", "1", "2"], "batch_size": ["16", "32"]}, {**TINY, "data": str(data)}, max_concurrent=2
    )
    assert sweep_dir == isolated_dirs / "runs" / "sweeps" / "sweep-1"
    backend = TimedLauncher(0.3)
    said: list[str] = []
    sweep = sweeps.run_queue(sweep_dir, backend, wait=True, poll=0.05, say=said.append)
    assert len(backend.active_at_submit) == 6 and max(backend.active_at_submit) <= 1  # never a 3rd
    assert sweep["status"] == "launched" and all(e["state"] == "launched" for e in sweep["runs"])
    assert sweep_records.read_sweep(sweep_dir)["runs"] == sweep["runs"]  # what the file says
    table = runs.runs_table(runs.list_runs())
    assert sorted(table["sweep"]) == ["sweep-1"] * 6
    assert {tuple(e["overrides"].values()) for e in sweep["runs"]} == {
        (s, b) for s in (0, 1, 2) for b in (16, 32)
    }
    assert len(said) == 6 and said[0].startswith("launched ")


def test_local_sweeps_default_to_one_at_a_time(isolated_dirs, data):
    sweep_dir = sweeps.create_sweep({"seed": ["0", "1"]}, {**TINY, "data": str(data)})
    assert sweep_records.read_sweep(sweep_dir)["max_concurrent"] == 1
    backend = TimedLauncher(0.2)
    sweeps.run_queue(sweep_dir, backend, poll=0.05, say=lambda _: None)
    assert backend.active_at_submit == [0, 0]


def test_stopping_a_sweep_cancels_the_queue_and_stops_its_runs(isolated_dirs, data):
    sweep_dir = sweeps.create_sweep({"seed": ["0", "1", "2"]}, {**TINY, "data": str(data)}, max_concurrent=1)
    # One run is out (a live local process), two wait in the queue.
    run_dir = runs.create_run({**TINY, "data": str(data)}, isolated_dirs / "runs")
    process = subprocess.Popen(["sleep", "300"], start_new_session=True)
    # Its identity recorded as the local launcher records it: Stop signals only a run's own process.
    run_status.write_status(
        run_dir,
        status="running",
        pid=process.pid,
        process=identity(process.pid),
        heartbeat=run_status.now(),
        launcher="local",
    )
    sweep_records.update_sweep(sweep_dir, lambda s: s["runs"][0].update(state="launched", run=str(run_dir)))
    try:
        assert sweeps.stop_sweep(sweep_dir) == {"cancelled": 2, "stopped": 1}
        assert process.wait(timeout=30) == -signal.SIGTERM  # the run was asked to stop
    finally:
        process.kill()
    sweep = sweeps.run_queue(sweep_dir, TimedLauncher(0), poll=0.01, say=lambda _: None)
    assert [e["state"] for e in sweep["runs"]] == ["launched", "cancelled", "cancelled"]
    assert sweep["status"] == "stopped"
    assert len(runs.list_runs()) == 1  # the queue launched nothing after the stop


def fake_finished_run(root: Path, config: dict, val_losses: list[float], state: str = "finished") -> Path:
    run_dir = runs.create_run(config, root)
    history = pd.DataFrame(
        {
            "epoch": range(1, len(val_losses) + 1),
            "stage": "train",
            "val_loss": val_losses,
            "val_age_bin_acc": [0.3 + 0.01 * i for i in range(len(val_losses))],
            "val_gender_acc": 0.7,
            "val_age_mae": [10 - i for i in range(len(val_losses))],
        }
    )
    atomic.write_text(run_dir / "history.csv", history.to_csv(index=False))
    atomic.write_json(run_dir / "metrics.json", {"test_age_mae": 9.0, "test_bin_accuracy": 0.4})
    run_status.write_status(run_dir, status=state, started=run_status.now() - 5, ended=run_status.now())
    return run_dir


def compared_sweep(isolated_dirs, data) -> dict:
    sweep_dir = sweeps.create_sweep(
        {"seed": ["0", "1"], "batch_size": ["16", "32"]}, {**TINY, "data": str(data)}, max_concurrent=2
    )
    sweep = sweep_records.read_sweep(sweep_dir)
    losses = {0: [2.0, 1.5], 1: [2.0, 1.1, 1.3], 2: [1.8]}  # the third run's 1.0 is a failed run's
    for i, entry in enumerate(sweep["runs"][:3]):
        path = fake_finished_run(isolated_dirs / "runs", entry["config"], losses[i])
        sweep["runs"][i].update(state="launched", run=str(path))
    failed = fake_finished_run(isolated_dirs / "runs", sweep["runs"][3]["config"], [1.0], state="failed")
    sweep["runs"][3].update(state="launched", run=str(failed))
    return sweep


def test_the_comparison_marks_the_finished_run_with_the_lowest_validation_loss(isolated_dirs, data):
    sweep = compared_sweep(isolated_dirs, data)
    table = sweep_compare.compare(sweep)
    assert list(table.columns[:6]) == ["index", "seed", "batch_size", "run", "state", "best"]
    assert table["best"].tolist() == [False, True, False, False]
    best = table.iloc[1]
    # Validation metrics at the best epoch (epoch 2: val_loss 1.1), not the last one.
    assert (best["val_loss"], best["val_age_mae"], best["val_age_bin_acc"]) == (1.1, 9.0, 0.31)
    assert table.iloc[3]["state"] == "failed" and best["test_age_mae"] == 9.0
    fig = sweep_compare.comparison_figure(table, ["seed", "batch_size"], "val_loss")
    star = [t for t in fig.data if t.name == "best (lowest val loss)"]
    assert len(star) == 1 and list(star[0].y) == [1.1] and star[0].text[0] == f"best: {best['run']}"
    assert "*" in sweep_compare.format_table(table)


def test_the_sweep_verb_rejects_a_bad_grid_before_anything_starts(isolated_dirs):
    # The grid is checked before any image is read: a well-named file is all the folder needs.
    folder = isolated_dirs / "utk"
    folder.mkdir()
    (folder / "25_0_0_20170116174525125.jpg.chip.jpg").write_bytes(b"")
    out = subprocess.run(
        [sys.executable, "-m", "agelab", "sweep", "model=baseline_cnn", "epochs=1,x", f"data={folder}"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "epochs='x'" in out.stderr and "sweep run 2" in out.stderr
    assert not (isolated_dirs / "runs" / "sweeps").exists()


def test_the_train_page_shows_a_sweep_and_its_best_run(isolated_dirs, data):
    sweep = compared_sweep(isolated_dirs, data)
    sweep_records.update_sweep(Path(sweep["path"]), lambda s: s.update(runs=sweep["runs"], status="launched"))
    app = AppTest.from_file(str(PROJECT_ROOT / "pages" / "train.py"), default_timeout=60).run()
    assert not app.exception
    assert any("sweep-1" in m.value and "4 launched" in m.value for m in app.markdown)
    frames = [f.value for f in app.dataframe]
    compare = next(f for f in frames if "best" in f.columns)
    assert compare["best"].tolist() == [False, True, False, False]
    assert "sweep" in frames[0].columns and "device" in frames[0].columns


def test_the_train_page_rejects_a_sweep_without_a_list(isolated_dirs, data):
    app = AppTest.from_file(str(PROJECT_ROOT / "pages" / "train.py"), default_timeout=60).run()
    texts = {w.label: w for w in app.text_input}
    texts["Dataset folder"].set_value(str(data))
    texts["Sweep (grid of runs)"].set_value("seed=1")
    next(b for b in app.button if b.label == "Launch sweep").click().run()
    assert any("no key with several values" in e.value for e in app.error)
    assert sweeps.list_sweeps() == []


@pytest.mark.slow
def test_a_local_sweep_trains_its_runs_one_at_a_time(isolated_dirs, data):
    out = subprocess.run(
        [sys.executable, "-m", "agelab", "sweep", *(f"{k}={v}" for k, v in TINY.items()), f"data={data}",
         "seed=0,1", "--wait"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    sweep = sweep_records.read_sweep(Path(out.stdout.strip().splitlines()[-1]))
    done = [runs.load_run(e["run"]) for e in sweep["runs"]]
    assert [r.state for r in done] == ["finished", "finished"]
    assert done[0].status["ended"] <= done[1].status["started"]  # one at a time
    assert sweep_compare.compare(sweep)["best"].sum() == 1


def test_the_detached_scheduler_resumes_a_sweep_folder(isolated_dirs, data):
    sweep_dir = sweeps.create_sweep({"seed": ["0", "1"]}, {**TINY, "data": str(data)})
    sweeps.stop_sweep(sweep_dir)  # nothing left to launch: the scheduler only records the end
    pid = sweeps.start_detached(sweep_dir)
    deadline = time.time() + 120
    while sweep_records.read_sweep(sweep_dir)["status"] != "stopped" and time.time() < deadline:
        time.sleep(0.2)
    sweep = sweep_records.read_sweep(sweep_dir)
    assert sweep["status"] == "stopped" and sweep["scheduler"]["pid"] == pid
    assert [e["state"] for e in sweep["runs"]] == ["cancelled", "cancelled"] and runs.list_runs() == []
