"""Run, sweep and saved-evaluation files with a field of the wrong type: each is read through
:mod:`agelab.schemas`, so the run or sweep is listed as damaged with the file and key named, and
the Train page, ``runs list`` and ``runs watch`` go on instead of crashing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from agelab import atomic, run_status, runs, sweep_compare, sweeps
from agelab.commands import sweep as sweep_command
from agelab.config import build_config
from agelab.paths import PROJECT_ROOT

# The file, the key and the wrong value; each was a crash somewhere (a sort, a subtraction, a signal).
WRONG_FIELDS = {
    "heartbeat": ("status.json", "heartbeat", "abc"),
    "created": ("status.json", "created", "yesterday"),
    "pid": ("status.json", "pid", "abc"),
    "negative pid": ("status.json", "pid", -1),
    "eta": ("progress.json", "eta_s", "x"),
    "curve": ("progress.json", "curve", "garbage"),
    "metric": ("metrics.json", "test_age_mae", "abc"),
}


def damaged_run(case: str) -> Path:
    """A running run (fresh heartbeat, real progress) with one field of the wrong type."""
    file, key, value = WRONG_FIELDS[case]
    run_dir = runs.create_run(build_config({"name": case.replace(" ", "_")}))
    now = time.time()
    run_status.write_status(run_dir, status="running", started=now, heartbeat=now)
    progress = {"stage": "heads", "epoch": 1, "epochs_total": 2, "batch": 3, "steps": 9, "eta_s": 12.0}
    atomic.write_json(run_dir / "progress.json", {**progress, "curve": [[1, 0.9], [2, 0.8]]})
    path = run_dir / file
    content = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**content, key: value}))
    return run_dir


@pytest.mark.parametrize("case", list(WRONG_FIELDS))
def test_a_wrongly_typed_field_makes_the_run_damaged_naming_file_and_key(isolated_dirs, case):
    run_dir = damaged_run(case)
    finished = runs.create_run(build_config({"name": "sound"}))
    run_status.write_status(finished, status="finished", started=1.0, ended=2.0)
    listed = {r.name: r for r in runs.list_runs()}
    assert set(listed) == {run_dir.name, finished.name}
    run = listed[run_dir.name]
    file, key, _ = WRONG_FIELDS[case]
    assert run.state == "damaged" and f"{file}: {key} is" in run.status["error"], run.status
    assert listed[finished.name].state == "finished"
    assert len(runs.runs_table(list(listed.values()))) == 2


def test_the_train_page_lists_runs_with_wrongly_typed_fields_as_damaged(isolated_dirs):
    made = [damaged_run(case) for case in WRONG_FIELDS]
    app = AppTest.from_file(str(PROJECT_ROOT / "pages" / "train.py"), default_timeout=60).run()
    assert not app.exception, app.exception
    table = app.dataframe[0].value.set_index("run")
    assert set(table.index) == {d.name for d in made}
    assert (table["status"] == "damaged").all()
    for run_dir in made:  # each one watched in turn shows why it is damaged
        watch(app, run_dir.name)
        assert any(f"Run {run_dir.name} is damaged" in e.value for e in app.error), run_dir


def pick(app: AppTest, label: str, value: str, shown: str) -> None:
    """Pick ``value`` in the page's box ``label`` until the page shows ``shown`` in a markdown line.
    The page gives its Watch run and Sweep boxes a new index on each pick, which makes a new widget
    that can drop the pick, so it is made again until it holds."""
    for _ in range(3):
        next(s for s in app.selectbox if s.label == label).set_value(value).run()
        assert not app.exception, app.exception
        if any(shown in m.value for m in app.markdown):
            return
    raise AssertionError(f"the page did not show {shown!r} for {label} {value}")


def watch(app: AppTest, name: str) -> None:
    pick(app, "Watch run", name, f"**{name}**")


def agelab_runs(isolated_dirs: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agelab", "runs", *args],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120,
        env=dict(os.environ, AGELAB_RUNS_DIR=str(isolated_dirs / "runs")),
    )  # fmt: skip


def test_runs_list_and_watch_report_a_damaged_run_and_end(isolated_dirs):
    made = [damaged_run(case) for case in ("heartbeat", "created", "pid", "eta")]
    listed = agelab_runs(isolated_dirs, "list")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    assert all(f"{d.name}" in listed.stdout for d in made) and listed.stdout.count("damaged") == len(made)
    for run_dir in made:
        watched = agelab_runs(isolated_dirs, "watch", run_dir.name)
        assert watched.returncode == 3 and "Traceback" not in watched.stderr, watched.stderr
        assert f"Run {run_dir.name} is damaged" in watched.stdout, watched.stdout


# ---------------------------------------------------------------- sweeps


def sweep_with(isolated_dirs: Path, name: str, content) -> Path:
    folder = isolated_dirs / "runs" / "sweeps" / name
    folder.mkdir(parents=True)
    (folder / "sweep.json").write_text(content if isinstance(content, str) else json.dumps(content))
    return folder


def sound_sweep(isolated_dirs: Path) -> Path:
    return sweeps.create_sweep({"seed": ["0", "1"]}, {"model": "baseline_cnn"}, name="sound")


DAMAGED_SWEEPS = {
    "empty-1": ({}, "sweep.json has no name"),
    "keyless-1": (None, "run 1 has no index, state, overrides, config"),
    "garbage-1": ("\x00{not json", "not valid JSON"),
    "runs-text-1": (None, "runs is"),
}


def damaged_sweeps(isolated_dirs: Path) -> dict[str, str]:
    good = json.loads((sound_sweep(isolated_dirs) / "sweep.json").read_text())
    made = {}
    for name, (content, reason) in DAMAGED_SWEEPS.items():
        if name == "keyless-1":
            content = {**good, "runs": [{}]}
        if name == "runs-text-1":
            content = {**good, "runs": "abc"}
        sweep_with(isolated_dirs, name, content)
        made[name] = reason
    return made


def test_damaged_sweeps_are_listed_as_damaged_with_the_reason(isolated_dirs):
    made = damaged_sweeps(isolated_dirs)
    listed = {s["name"]: s for s in sweeps.list_sweeps()}
    assert set(listed) == {*made, "sound-1"}
    assert sweeps.sweep_state(listed["sound-1"]) == "pending"
    for name, reason in made.items():
        assert sweeps.sweep_state(listed[name]) == "damaged"
        assert f"Sweep {name} is damaged" in listed[name]["error"] and reason in listed[name]["error"]
        assert sweep_compare.compare(listed[name]).empty


def test_the_train_page_shows_every_damaged_sweep_without_crashing(isolated_dirs):
    made = damaged_sweeps(isolated_dirs)
    app = AppTest.from_file(str(PROJECT_ROOT / "pages" / "train.py"), default_timeout=60).run()
    assert not app.exception, app.exception
    for name in made:
        pick(app, "Sweep", name, f"**{name}** · `damaged`")


@pytest.mark.parametrize("name", list(DAMAGED_SWEEPS))
def test_sweep_resume_and_stop_of_a_damaged_sweep_say_why_in_one_line(isolated_dirs, name):
    damaged_sweeps(isolated_dirs)
    folder = isolated_dirs / "runs" / "sweeps" / name
    for flag in ("--resume", "--stop"):
        done = subprocess.run(
            [sys.executable, "-m", "agelab", "sweep", flag, str(folder)],
            capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120,
            env=dict(os.environ, AGELAB_RUNS_DIR=str(isolated_dirs / "runs")),
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and f"Sweep {name} is damaged" in lines[0], done.stderr


def test_stopping_a_folder_that_is_no_sweep_names_it(isolated_dirs, capsys):
    assert sweep_command.cli(["--stop", str(isolated_dirs / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "nowhere is not a sweep folder" in err and "Errno" not in err
