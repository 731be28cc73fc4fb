"""Processes on this machine: a detached ``python -m agelab`` process, and whether a pid still lives.

A run (and a sweep's scheduler) is such a process, so it goes on when the dashboard closes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from agelab.paths import PROJECT_ROOT

# What a spawned ``train`` is told when its stdout and stderr already go to its run's log.txt (the
# ``log_path`` of :func:`spawn`), so that it does not copy them there a second time.
LOG_REDIRECTED = "--log-redirected"


def spawn(args: list[str], log_path: Path, env: dict[str, str] | None = None) -> int:
    """``python -m agelab ARGS`` as a detached process, its output appended to ``log_path``; its pid."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "agelab", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=PROJECT_ROOT,
            env=env,
            start_new_session=True,  # its own session: closing the dashboard does not end it
        )
    _reap_later(process)
    return process.pid


def _reap_later(process: subprocess.Popen) -> None:
    # Collect the exit status when it ends, so no zombie stays behind in a long-lived dashboard.
    threading.Thread(target=process.wait, daemon=True).start()


def pid_alive(pid: int | None) -> bool:
    """Whether process ``pid`` on this machine still runs (a zombie does not)."""
    # 0 and negative pids name process groups (-1: every process), never one process.
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a finished child that its parent has not reaped yet is a zombie, not a live run
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (which may hold spaces and
    parentheses), so field 3 of proc(5), the state, is at index 0; None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def identity(pid: int) -> dict[str, Any] | None:
    """What tells process ``pid`` apart from a later process given the same pid: the machine, its
    boot, and the process's start time (clock ticks after boot, fixed for its whole life, exec
    included). Recorded when a run or sweep scheduler is launched; None when ``pid`` is not running."""
    fields = _stat_fields(pid) if isinstance(pid, int) and pid > 0 else None
    if fields is None or len(fields) < 20:
        return None
    return {"pid": pid, "host": socket.gethostname(), "boot_id": _boot_id(), "start_ticks": int(fields[19])}


def is_agelab_process(pid: int, verb: str) -> bool:
    """Whether ``pid`` runs ``python -m agelab VERB`` (what a run started by hand from a terminal is)."""
    args = _cmdline(pid)
    for i, arg in enumerate(args):
        if (arg == "agelab" and args[i - 1 : i] == ["-m"]) or arg.endswith("agelab/__main__.py"):
            return args[i + 1 : i + 2] == [verb]
    return False


def own_process(status: dict[str, Any], verb: str = "train") -> tuple[int | None, str]:
    """The pid in ``status`` when it is verifiably that run's own process, else None, with why not.

    The pid must be a positive integer on this host; when the launch recorded the process's identity
    (:func:`identity`), the live process must still have that boot and start time; when it did not (a
    run started by hand), the live process must run ``python -m agelab VERB``. Anything else, a pid
    reused by another program included, is never signalled."""
    pid = status.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None, f"its status.json names no valid process id ({pid!r})"
    host = status.get("host")
    if host not in (None, socket.gethostname()):
        return None, f"it runs on {host}, not on this machine ({socket.gethostname()})"
    live = identity(pid)
    if live is None:
        return None, f"its process {pid} has ended"
    recorded = status.get("process")
    if isinstance(recorded, dict) and recorded.get("pid") == pid:
        if recorded.get("boot_id") != live["boot_id"] or recorded.get("start_ticks") != live["start_ticks"]:
            return None, f"process {pid} is not the one launched for it (it started at another time)"
        return pid, ""
    if not is_agelab_process(pid, verb):
        return None, f"process {pid} is not an agelab {verb} process ({' '.join(_cmdline(pid))[:80]!r})"
    return pid, ""
