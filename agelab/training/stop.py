"""Stop requests: the dashboard's Stop button (SIGTERM) or Ctrl-C, turned into a flag the callbacks read."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from agelab import runs


class StopRequest:
    """SIGTERM/SIGINT ask the run to stop after the current batch; a second one ends it at once."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.requested = False
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            runs.write_status_from_signal(self.run_dir, status="stopped", killed=True, ended=time.time())
            print("second stop: ending now without saving", flush=True)
            os._exit(128 + signum)
        self.requested = True
        print("stop requested: finishing the current batch, then saving", flush=True)
