"""How a run ends other than finished: the exceptions, and the one-sentence reason of a failure."""

from __future__ import annotations

import errno
from pathlib import Path


class TrainingFailed(RuntimeError):
    """A run crashed; its ``status.json`` already records why."""

    def __init__(self, run_dir: Path, message: str) -> None:
        super().__init__(message)
        self.run_dir = run_dir


class RunError(RuntimeError):
    """A run that cannot go on, for a reason one sentence says (recorded without a traceback)."""


class StopAtBatch(Exception):
    """A stop request seen after a batch: ``fit()`` ends there, without the validation pass of the epoch
    it cuts short, and that partial epoch is never recorded as an epoch."""


class RunStopped(Exception):
    """A stop request arrived before the first epoch ended: nothing to save."""


def failure_reason(err: BaseException, run_dir: Path) -> str | None:
    """The one-sentence reason of a failure that needs no traceback, or None for a crash."""
    if isinstance(err, RunError):
        return str(err)
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        where = f" ({err.filename})" if err.filename else ""
        return (
            f"the disk is full: no space left on device{where} while run {run_dir.name} was writing;"
            " free some space, then launch the run again"
        )
    return None
