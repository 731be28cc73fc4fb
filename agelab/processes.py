"""Processes on this machine: a detached ``python -m agelab`` process, and whether a pid still lives.

A run (and a sweep's scheduler) is such a process, so it goes on when the dashboard closes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from agelab.paths import PROJECT_ROOT


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
    if not pid:
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
