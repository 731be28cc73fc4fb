"""Run folders: ``runs/<name>-<n>/``, their files (config, status, heartbeat, metrics, progress,
history, log), and listing, reading and deleting them.

A run is a separate process (``python -m agelab train``; :mod:`agelab.launchers` starts and stops it),
so it goes on when the browser closes. Its folder is the only channel between it and the dashboard;
every file there is written atomically, except the ever-growing ``log.txt``.
"""

from __future__ import annotations

import errno
import fcntl
import math
import os
import re
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from agelab import atomic, schemas
from agelab.paths import runs_dir
from agelab.processes import own_process, pid_alive

# A run is queued, running, finished, failed, stopped, "lost" (it was running, and its process died
# without recording an end: resumable from its last checkpoint), or "damaged": a run file cannot be
# read; the run is listed with the reason and can be deleted.
ACTIVE = ("queued", "running")
# The states a run can be resumed from (``train resume=RUN``), given a checkpoint.
RESUMABLE = ("stopped", "failed", "lost")
HEARTBEAT_EVERY_S = 5.0
# A live run refreshes its heartbeat every few seconds; this much silence means it died.
HEARTBEAT_STALE_S = 60.0
QUEUED_TIMEOUT_S = 120.0
MAX_NAME = 100  # with "-<n>", well inside the 255 bytes a file name may have
RUN_NAME = re.compile(r"^(?P<name>.+)-(?P<n>\d+)$")
SAFE_NAME = re.compile(r"[^A-Za-z0-9_.]+")


def now() -> float:
    return time.time()


def iso(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


# ---------------------------------------------------------------- folders


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


_status_lock = threading.Lock()


def write_status(run_dir: Path, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into ``status.json``.

    The run, its heartbeat thread and the dashboard (Stop) all update this file; a lock file
    keeps one writer from undoing another's change between its read and its rename.
    """
    return _write_status(run_dir, fields)


def rewrite_status(run_dir: Path, drop: tuple[str, ...], **fields: Any) -> dict[str, Any]:
    """Like :func:`write_status`, with the keys ``drop`` removed in the same write (a resumed run
    leaves its earlier end, error and stop request behind)."""
    return _write_status(run_dir, fields, drop=drop)


def _write_status(
    run_dir: Path, fields: dict[str, Any], wait: float = -1, drop: tuple[str, ...] = ()
) -> dict[str, Any]:
    if not _status_lock.acquire(timeout=wait):
        return {}  # a signal handler interrupted this thread's own write: give up rather than deadlock
    try:
        with open(Path(run_dir) / ".status.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            path = Path(run_dir) / "status.json"
            try:
                status = atomic.read_json(path, {})
            except ValueError:
                status = {}  # a damaged status is replaced by what is known now
            status = status if isinstance(status, dict) else {}
            for key in drop:
                status.pop(key, None)
            status.update(fields)
            try:
                atomic.write_json(path, status)
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
                # A full disk has no room for the temporary copy; the status is small and must
                # still say what happened, so it is rewritten in place, in the blocks it holds.
                _write_in_place(path, atomic.dumps(status, indent=2) + "\n")
            return status
    finally:
        _status_lock.release()


def _write_in_place(path: Path, text: str) -> None:
    data = text.encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, data)
    finally:
        os.close(fd)


def write_status_from_signal(run_dir: Path, **fields: Any) -> dict[str, Any]:
    """Like :func:`write_status`, for a signal handler, which may have interrupted a write."""
    return _write_status(run_dir, fields, wait=1.0)


def effective_status(run_dir: Path, status: dict[str, Any] | None = None) -> dict[str, Any]:
    """The status with dead runs marked. A queued run whose process is gone, or that waited too long,
    reads as ``failed`` (it never started). A running run reads as ``lost`` when its process is gone
    (on this host), or when its heartbeat went stale and its process cannot be seen to live (another
    host, or a pid that is no longer the run's own): it can be resumed from its last checkpoint.
    Either way ``error`` gets the reason and the tail of the log."""
    if status is None:
        status = schemas.read_status(Path(run_dir), [])
    status = dict(status)
    state = status.get("status", "failed")
    if state not in ACTIVE:
        return status
    reason = queued_reason(status) if state == "queued" else lost_reason(status)
    if reason:
        status["status"] = "failed" if state == "queued" else "lost"
        what = "The run died" if state == "queued" else "The run was lost"
        status["error"] = status.get("error") or f"{what}: {reason}.\n--- log tail ---\n" + log_tail(
            run_dir, 20
        )
        status["dead"] = True
    return status


def queued_reason(status: dict[str, Any]) -> str | None:
    """Why a queued run will never start, or None while it may."""
    pid = status.get("pid")
    beat = status.get("heartbeat") or status.get("created") or 0
    if status.get("host") in (None, socket.gethostname()) and pid and not pid_alive(pid):
        return f"its process {pid} ended without finishing"
    # A Ray run waits in the cluster's queue as long as it must; agelab.launchers asks Ray about it.
    if status.get("launcher") != "ray" and now() - beat > QUEUED_TIMEOUT_S:
        return f"no heartbeat for {now() - beat:.0f} s"
    return None


def lost_reason(status: dict[str, Any]) -> str | None:
    """Why a running run is lost, or None while it may still run. On this host its process decides:
    gone is lost at once, its own is alive whatever the heartbeat says; a pid now held by another
    process, or a run on another host, is lost once the heartbeat is ``HEARTBEAT_STALE_S`` old."""
    silent = now() - (status.get("heartbeat") or status.get("started") or status.get("created") or 0)
    stale = silent > HEARTBEAT_STALE_S
    pid = status.get("pid")
    if status.get("host") in (None, socket.gethostname()) and isinstance(pid, int) and pid > 0:
        if not pid_alive(pid):
            return f"its process {pid} ended without finishing"
        own, why = own_process(status)
        if own is not None or not stale:
            return None
        return f"no heartbeat for {silent:.0f} s, and {why}"
    return f"no heartbeat for {silent:.0f} s" if stale else None


# TensorFlow's C++ start-up notices (absl's preface, "I0000 ... port.cc:153] oneDNN ...", the CPU
# instruction note): TF_CPP_MIN_LOG_LEVEL does not silence them in TF 2.21, so the log view drops them.
TF_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)"
    r"|[IW]\d{4} [\d:.]+ +\d+ [\w./-]+:\d+\] "
    r"|To enable the following instructions: .* in other operations, rebuild TensorFlow)"
)


def log_tail(run_dir: Path, lines: int = 40) -> str:
    path = Path(run_dir) / "log.txt"
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    # Keras progress bars redraw with carriage returns; keep only the last state of each line.
    rows = [row.rsplit("\r", 1)[-1] for row in text.splitlines()]
    rows = [row for row in rows if not TF_NOISE.match(row)]
    return "\n".join(rows[-lines:])


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
                "bin_acc": m.get("test_bin_accuracy"),
                "within_1_bin": m.get("test_within_one_bin"),
                "age_mae": m.get("test_age_mae"),
                "gender_acc": m.get("test_gender_accuracy"),
                "test_images": m.get("n_test"),
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


NUMERIC_COLUMNS = (
    "size",
    "epochs",
    "bin_acc",
    "within_1_bin",
    "age_mae",
    "gender_acc",
    "test_images",
    "duration_s",
)


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


class Heartbeat:
    """Refreshes ``status.json``'s heartbeat from a background thread while the run lives."""

    def __init__(self, run_dir: Path, every: float = HEARTBEAT_EVERY_S) -> None:
        self.run_dir = Path(run_dir)
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="heartbeat")

    def __enter__(self) -> Heartbeat:
        write_status(self.run_dir, heartbeat=now())
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every + 1)

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                write_status(self.run_dir, heartbeat=now())
            except OSError:
                pass  # the folder was deleted under us; the run will notice when it saves
