"""Sweeps through Ray Tune on a real head on 127.0.0.1: a random search and an ASHA search, each trial a
normal agelab run of the sweep, ASHA stopping the worse ones on their per-epoch validation loss.

Marked ``cluster``; skipped without ``ray`` (``make test-cluster`` installs it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_cluster import head  # noqa: F401  (the module's own head, as in test_cluster)
from test_sweeps import TINY

from agelab import runs, sweep_compare, sweep_records
from agelab.paths import PROJECT_ROOT
from tests.real_data import copy_real_images

pytestmark = pytest.mark.cluster
pytest.importorskip("ray", reason="ray is not installed: make test-cluster installs requirements-cluster.txt")


@pytest.fixture(scope="module")
def shared(utkface_dir, tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("tune")
    copy_real_images(utkface_dir, base / "utk", 90, step=120)
    return base


def search(head_address: str, shared: Path, *keys: str) -> tuple[subprocess.CompletedProcess, Path]:
    env = {"AGELAB_RUNS_DIR": str(shared / "runs"), "AGELAB_CACHE_DIR": str(shared / "cache")}
    out = subprocess.run(
        [sys.executable, "-m", "agelab", "sweep", *(f"{k}={v}" for k, v in TINY.items()),
         f"data={shared / 'utk'}", *keys, "--ray", head_address, "--wait"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1500,
        env={**os.environ, **env},
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out, Path(out.stdout.strip().splitlines()[-1])


def test_a_random_search_runs_its_samples_as_runs_of_the_sweep(head, shared):  # noqa: F811
    out, sweep_dir = search(
        head, shared, "search=random", "samples=3", "learning_rate=0.0001..0.01", "seed=0,1"
    )
    sweep = sweep_records.read_sweep(sweep_dir)
    assert sweep["search"]["search"] == "random" and sweep["backend"] == "ray" and sweep["driver_job"]
    assert len(sweep["runs"]) == 3 and [e["state"] for e in sweep["runs"]] == ["launched"] * 3
    done = [runs.load_run(e["run"]) for e in sweep["runs"]]
    assert all(r.state == "finished" and r.status["launcher"] == "tune" for r in done), [
        r.status.get("error") for r in done
    ]
    for run, entry in zip(done, sweep["runs"]):
        assert 0.0001 <= run.config["learning_rate"] <= 0.01 and run.config["seed"] in (0, 1)
        assert entry["overrides"]["learning_rate"] == run.config["learning_rate"]
        assert run.status["sweep"] == sweep["name"] and len(run.history) == 1
    table = runs.runs_table(runs.list_runs(shared / "runs"))
    assert (table["sweep"] == sweep["name"]).sum() == 3
    compared = sweep_compare.compare(sweep)
    assert len(compared) == 3 and compared["best"].sum() == 1 and "learning_rate" in compared
    assert "*" in out.stdout


def test_asha_stops_the_worse_trials_on_their_validation_loss(head, shared):  # noqa: F811
    _, sweep_dir = search(
        head, shared, "search=asha", "samples=8", "grace_period=1", "epochs=3", "learning_rate=0.00001..0.01"
    )
    sweep = sweep_records.read_sweep(sweep_dir)
    assert sweep["search"] == {**sweep["search"], "search": "asha", "grace_period": 1, "max_epochs": 3}
    done = [runs.load_run(e["run"]) for e in sweep["runs"]]
    assert len(done) == 8
    early = [r for r in done if r.status.get("early_stopped")]
    full = [r for r in done if r.state == "finished"]
    assert early, "ASHA stopped no trial: every later trial beat the earlier ones at each rung"
    assert full and all(len(r.history) == 3 for r in full)
    for run in early:
        epochs = int(run.status["note"].split("after epoch ")[1].split()[0])
        assert run.state == "stopped" and 1 <= epochs < 3, run.status
        assert epochs <= len(run.history) < 3  # stopped before its last epoch, after the reported one
        # Stopped at a rung where its validation loss was worse than another trial's there.
        rung_losses = [r.history["val_loss"].iloc[epochs - 1] for r in done if len(r.history) >= epochs]
        assert run.history["val_loss"].iloc[epochs - 1] > min(rung_losses)
    assert sweep_compare.compare(sweep)["best"].sum() == 1
