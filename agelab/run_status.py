"""What a run's ``status.json`` says, and whether to believe it: the status written under a lock (the
run, its heartbeat thread and the dashboard's Stop all write it), the heartbeat that shows the run
lives, and the reading that marks a run whose process died as ``lost`` (resumable) or, still queued,
``failed``, with the tail of its log as the reason.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

from agelab import atomic, schemas
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


def now() -> float:
    return time.time()


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
