"""Stop requests: the dashboard's Stop button (SIGTERM), Ctrl-C, ``stop_requested`` in the run's
``status.json``, or a Ray head that stopped answering (:mod:`agelab.training.cluster_watch`), turned
into a flag the callbacks read after every batch.

The folder is read as well as the signals because a signal may never arrive: a Ray run whose cluster
is gone cannot be reached through Ray, and a run on another machine cannot be signalled from here,
but both still read their folder. ``runs stop`` always writes the request there first.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from agelab import run_status


class StopRequest:
    """SIGTERM/SIGINT ask the run to stop after the current batch; a second one ends it at once. A
    ``stop_requested`` time in ``status.json`` asks the same as the first signal."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.signalled = False
        self.in_folder = False
        # Why the run is lost rather than stopped (its Ray head stopped answering); None otherwise.
        self.lost: str | None = None
        self._previous: dict[int, Any] = {}
        self._seen: tuple[int, int, int] | None = None

    @property
    def requested(self) -> bool:
        return self.signalled or self.lost is not None or self._asked_in_folder()

    def lose(self, reason: str) -> None:
        """Stop as a request does, and end the run as ``lost`` with ``reason`` (agelab.training.cluster_watch)."""
        self.lost = reason
        print(f"{reason}: finishing the current batch, then saving", flush=True)

    def _asked_in_folder(self) -> bool:
        """Whether ``status.json`` holds a stop request. Cheap enough for every batch: the file is parsed
        only when it changed (every write replaces it, so its inode changes)."""
        if self.in_folder:
            return True
        path = self.run_dir / "status.json"
        try:
            stat = path.stat()
        except OSError:
            return False
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if key == self._seen:
            return False
        self._seen = key
        try:
            status = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False  # a file being replaced: the next batch reads the new one
        if isinstance(status, dict) and status.get("stop_requested"):
            self.in_folder = True
            print("stop requested in the run folder: finishing the current batch, then saving", flush=True)
        return self.in_folder

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        # Only a second signal ends the run at once: Stop writes the folder's request before it signals.
        if self.signalled:
            run_status.write_status_from_signal(
                self.run_dir, status="stopped", killed=True, ended=time.time()
            )
            print("second stop: ending now without saving", flush=True)
            os._exit(128 + signum)
        self.signalled = True
        print("stop requested: finishing the current batch, then saving", flush=True)
