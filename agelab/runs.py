"""Run folders: ``runs/<name>-<n>/``, their files (config, status, metrics, progress, history, log),
and making, listing, reading, tabulating and deleting them. What a run's status says (written under a
lock, kept fresh by its heartbeat, read as lost when its process died) is :mod:`agelab.run_status`.

A run is a separate process (``python -m agelab train``; :mod:`agelab.launchers` starts and stops it),
so it goes on when the browser closes. Its folder is the only channel between it and the dashboard;
every file there is written atomically, except the ever-growing ``log.txt``.
"""

from __future__ import annotations

import math
import re
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from agelab import atomic, schemas
from agelab.metric_names import METRICS, SCORES
from agelab.paths import runs_dir

# launchers.py still reads TF_NOISE (and the status names this module uses) through here.
from agelab.run_status import (
    ACTIVE,
    TF_NOISE,  # noqa: F401
    effective_status,
    log_tail,
    now,
    write_status,
)

MAX_NAME = 100  # with "-<n>", well inside the 255 bytes a file name may have
RUN_NAME = re.compile(r"^(?P<name>.+)-(?P<n>\d+)$")
SAFE_NAME = re.compile(r"[^A-Za-z0-9_.]+")


def iso(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def create_run(config: dict[str, Any], root: Path | None = None) -> Path:
    """A new self-numbered folder ``<root>/<name>-<n>`` holding ``config.json`` and a queued status."""
    root = Path(root or runs_dir())
    root.mkdir(parents=True, exist_ok=True)
    name = (
        SAFE_NAME.sub("_", config.get("name") or config.get("model") or "run").strip("_")[:MAX_NAME] or "run"
    )
    while True:
        taken = [int(m["n"]) for p in root.iterdir() if (m := RUN_NAME.match(p.name)) and m["name"] == name]
        run_dir = root / f"{name}-{max(taken, default=0) + 1}"
        try:
            run_dir.mkdir()  # atomic: two launches never share a folder
            break
        except FileExistsError:
            continue
    try:
        atomic.write_json(run_dir / "config.json", config)
        write_status(run_dir, status="queued", created=now(), host=socket.gethostname())
    except OSError:
        shutil.rmtree(run_dir, ignore_errors=True)  # no half-made run left behind (a full disk)
        raise
    return run_dir


@dataclass
class Run:
    """Everything the dashboard shows about one run."""

    path: Path
    config: dict[str, Any]
    status: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)
    _history: pd.DataFrame | None = None
    problems: list[str] = field(default_factory=list)  # why the run is damaged; empty when sound

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def state(self) -> str:
        return "damaged" if self.problems else self.status.get("status", "failed")

    @property
    def history(self) -> pd.DataFrame:
        if self._history is None:
            self._history = read_history(self.path / "history.csv", self.problems)
        return self._history

    @property
    def duration_s(self) -> float | None:
        start = self.status.get("started")
        if not start:
            return None
        end = self.status.get("ended") or (now() if self.state == "running" else self.status.get("heartbeat"))
        return None if end is None else max(0.0, end - start)

    def log(self, lines: int = 200) -> str:
        return log_tail(self.path, lines)


def read_run_file(path: Path, problems: list[str]) -> dict[str, Any]:
    """A run's JSON file as a mapping; ``{}`` when missing. A file that cannot be read, or that
    holds something other than a mapping, adds a one-sentence reason to ``problems``. Its fields
    are not checked: :mod:`agelab.schemas` reads status, progress and metrics checked."""
    return schemas.read_mapping(path, problems)


def read_history(path: Path, problems: list[str]) -> pd.DataFrame:
    """``history.csv`` (one row per epoch, numeric but for ``stage``); empty when missing. A damaged
    file adds its reason to ``problems``."""
    try:
        history = pd.read_csv(path)
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return pd.DataFrame()
    except (OSError, ValueError) as err:  # ParserError and UnicodeDecodeError are ValueErrors
        problems.append(f"history.csv cannot be read ({str(err).splitlines()[0][:80]})")
        return pd.DataFrame()
    numeric = [c for c in history.columns if c != "stage"]
    if "epoch" not in history or not all(pd.api.types.is_numeric_dtype(history[c]) for c in numeric):
        problems.append("history.csv is damaged (no epoch column, or text where numbers belong)")
        return pd.DataFrame()
    return history


def load_run(path: str | Path) -> Run:
    """A run folder's config, effective status, metrics, progress and history. A file that cannot be
    read makes the run ``damaged`` (listed, with the reason in its status's ``error``, and deletable)."""
    path = Path(path)
    if not (path / "config.json").exists() and not (path / "status.json").exists():
        raise FileNotFoundError(f"{path} is not a run folder (no config.json)")
    problems: list[str] = []
    config = read_run_file(path / "config.json", problems)
    status = effective_status(path, schemas.read_status(path, problems))
    metrics = schemas.read_metrics(path, problems)
    if any(
        isinstance(v, float) and not math.isfinite(v) for k, v in metrics.items() if k.startswith("test_")
    ):
        problems.append(
            "metrics.json holds NaN test metrics (the run diverged); train it again with a lower learning_rate"
        )
    progress = schemas.read_progress(path, problems)
    history = read_history(path / "history.csv", problems)
    if problems:
        status["error"] = (
            f"Run {path.name} is damaged: {'; '.join(problems)}. Delete it, or restore the file."
        )
    return Run(path, config, status, metrics, progress, history, problems)


def list_runs(root: str | Path | None = None) -> list[Run]:
    """Every run under the runs folder, newest first."""
    root = Path(root or runs_dir())
    if not root.is_dir():
        return []
    runs = []
    for path in root.iterdir():
        try:
            if path.is_dir() and ((path / "config.json").exists() or (path / "status.json").exists()):
                runs.append(load_run(path))
        except FileNotFoundError:
            continue  # a folder being deleted
        except OSError as err:  # a folder this user may not enter: listed, with the reason
            reason = f"Run folder {path} cannot be read ({err.strerror or err}); give your user access to it, or delete it."
            runs.append(Run(path, {}, {"status": "failed", "error": reason}, problems=[reason]))
    return sorted(runs, key=lambda r: r.status.get("created") or 0, reverse=True)


# The runs table's metric columns: the four test scores, then how many faces they were measured on.
TABLE_METRICS = (*SCORES, "n")
NUMERIC_COLUMNS = ("size", "epochs", *(METRICS[name].column for name in TABLE_METRICS), "duration_s")


def runs_table(runs: list[Run]) -> pd.DataFrame:
    """One row per run: status, model, key metrics, duration, device."""
    rows = []
    for run in runs:
        c, m = run.config, run.metrics
        rows.append(
            {
                "run": run.name,
                "status": run.state,
                "model": c.get("model"),
                "size": c.get("image_size"),
                "bins": c.get("bins"),
                "fast": c.get("fast"),
                "epochs": run.progress.get("epoch") or m.get("epochs_completed"),
                # The test scores and their count, under the runs table's names (agelab.metric_names).
                **{METRICS[name].column: m.get(METRICS[name].run_key) for name in TABLE_METRICS},
                # Which images the test metrics were measured on: equal only where the sets are equal.
                "test_set": m.get("scored_on") if isinstance(m.get("scored_on"), str) else None,
                "duration_s": None if run.duration_s is None else round(run.duration_s, 1),
                "device": run.status.get("device"),
                "sweep": run.status.get("sweep"),
                "launcher": run.status.get("launcher", "local"),
                "job_id": run.status.get("job_id"),
                "address": run.status.get("ray_address"),
                "started": iso(run.status.get("started") or run.status.get("created")),
                "path": str(run.path),
            }
        )
    table = pd.DataFrame(rows)
    # A hand-edited config or metrics file may hold text where the table shows numbers.
    for column in NUMERIC_COLUMNS:
        if column in table:
            table[column] = pd.to_numeric(table[column], errors="coerce")
    return table


def test_set_warning(table: pd.DataFrame) -> str | None:
    """One sentence when the runs of ``table`` (:func:`runs_table` rows) were scored on different test
    sets, so their test metrics cannot be compared; None when they share one (or none is known)."""
    known = table.dropna(subset=["test_set"]) if "test_set" in table else table.iloc[0:0]
    unknown = table.loc[table["test_set"].isna(), "run"].tolist() if "test_set" in table else []
    sets = known.groupby("test_set", sort=False)["run"].apply(list)
    if len(sets) <= 1 and not (unknown and len(sets)):
        return None
    groups = "; ".join(
        f"{', '.join(names)} on {int(known.loc[known['run'] == names[0], 'test_images'].iloc[0] or 0):,} images"
        for names in sets
    )
    if unknown:
        groups += f"; {', '.join(unknown)} on a test set not recorded"
    return (
        f"These runs were scored on different test sets ({groups}): their test metrics are not comparable. "
        "Score them on one with `python -m agelab evaluate --model RUN --data FOLDER` for each run."
    )


def delete_run(path: str | Path) -> None:
    """Delete a run folder. A running run must be stopped first."""
    path = Path(path).resolve()
    root = runs_dir().resolve()
    if root not in path.parents or not ((path / "config.json").exists() or (path / "status.json").exists()):
        raise ValueError(f"{path} is not a run folder under {root}; nothing deleted")
    if effective_status(path).get("status") in ACTIVE:
        raise RuntimeError(f"run {path.name} is still running; stop it before deleting it")
    shutil.rmtree(path)
