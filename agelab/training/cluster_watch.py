"""A Ray job's training process watches its head, so that a head killed under it leaves no orphan.

Ray ends a job's process late and abruptly when the head dies, if at all: its watcher kills the job
only once the job supervisor goes, which on one machine (Ray 2.60) was a SIGKILL 63 s after the
GCS, when the raylet gave up on it; a supervisor that lives on leaves the run training, listed as
``running``, on a cluster that can neither stop it nor report it. So the run checks the head itself and, once it has stopped answering for ``MISSES_BEFORE_LOST``
checks in a row, asks itself to stop as a stop request does: after the current batch, with the
checkpoint of its last finished epoch kept. It then ends as ``lost`` (resumable with
``train resume=RUN``), its error naming the head and the time it stopped answering.

What is checked, and why: a TCP connection to the head's GCS, whose address Ray gives the job in
``RAY_ADDRESS``. The GCS is the head (no job can be queried, stopped or scheduled without it), a
connect is one cheap syscall pair every few seconds and needs no Ray import in the training process,
and it works as well for a job on a worker node. The job's parent chain would not: the supervisor
is a worker process that can outlive the GCS, and on another node it says nothing about the head.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

from agelab.training.stop import StopRequest

RAY_ADDRESS_ENV = "RAY_ADDRESS"
CHECK_EVERY_S = 5.0
CONNECT_TIMEOUT_S = 3.0
# Three silent checks (about 15 s): a head busy for a moment is not a dead one.
MISSES_BEFORE_LOST = 3


def gcs_address(value: str | None) -> tuple[str, int] | None:
    """``127.0.0.1:6379`` -> ("127.0.0.1", 6379); None for "auto", a URL or anything without a port."""
    value = (value or "").strip()
    if not value or "://" in value or ":" not in value:
        return None
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    return (host, int(port)) if host and port.isdigit() else None


def head_answers(address: tuple[str, int], timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """Whether something accepts a TCP connection at the head's GCS address."""
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


class HeadWatch:
    """A daemon thread that checks the head every ``every`` seconds and, after ``misses`` failed checks
    in a row, calls ``stopper.lose`` with the sentence the run ends with."""

    def __init__(
        self,
        stopper: StopRequest,
        address: tuple[str, int],
        run_name: str,
        every: float = CHECK_EVERY_S,
        misses: int = MISSES_BEFORE_LOST,
    ) -> None:
        self.stopper = stopper
        self.address = address
        self.run_name = run_name
        self.every = every
        self.misses = misses
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="ray-head-watch")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        silent_since: float | None = None
        missed = 0
        while not self._stop.wait(self.every):
            if head_answers(self.address):
                silent_since, missed = None, 0
                continue
            silent_since = silent_since or time.time()
            missed += 1
            if missed >= self.misses:
                self.stopper.lose(self.reason(silent_since))
                return

    def reason(self, silent_since: float) -> str:
        host, port = self.address
        at = time.strftime("%H:%M:%S", time.localtime(silent_since))
        return (
            f"the Ray head at {host}:{port} stopped answering at {at}; resume with"
            f" python -m agelab train resume={self.run_name}"
        )


def watch_head(stopper: StopRequest, status: dict[str, Any]) -> HeadWatch | None:
    """A watch of the run's Ray head when the run is a Ray job (its status says ``launcher: ray`` and
    Ray gave it the head's GCS address); None for a local run, which has no head to lose."""
    if status.get("launcher") != "ray":
        return None
    address = gcs_address(os.environ.get(RAY_ADDRESS_ENV))
    if address is None:
        return None
    return HeadWatch(stopper, address, stopper.run_dir.name)
