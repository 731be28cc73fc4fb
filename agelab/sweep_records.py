"""A sweep's folder and record: ``runs/sweeps/<name>-<n>/sweep.json``, read checked and changed under a
lock. The grid and its queue (:mod:`agelab.sweeps`) and Tune searches (:mod:`agelab.tune`) both keep
their runs here, so both read and write it through this module.
"""

from __future__ import annotations

import fcntl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agelab import atomic, schemas
from agelab.paths import runs_dir


def sweeps_root(root: Path | None = None) -> Path:
    return Path(root or runs_dir()) / "sweeps"


class SweepError(ValueError):
    """A sweep that cannot be read or changed, in one sentence naming it."""


class DamagedSweep(SweepError):
    """A sweep folder whose ``sweep.json`` cannot be read or does not hold a sweep."""


def read_sweep(sweep_dir: Path) -> dict[str, Any]:
    """A sweep's ``sweep.json``, checked (:func:`agelab.schemas.sweep_problems`). A folder without one
    raises FileNotFoundError; a damaged one :class:`DamagedSweep`, naming the sweep and the key."""
    sweep_dir = Path(sweep_dir)
    path = sweep_dir / "sweep.json"
    try:
        sweep = atomic.read_json(path, None)
    except ValueError:
        raise DamagedSweep(damaged_message(sweep_dir, ["sweep.json is not valid JSON"])) from None
    except OSError as err:
        raise DamagedSweep(
            damaged_message(sweep_dir, [f"sweep.json cannot be read ({err.strerror})"])
        ) from None
    if sweep is None:
        raise FileNotFoundError(f"{sweep_dir} is not a sweep folder (no sweep.json)")
    problems = schemas.sweep_problems(sweep)
    if problems:
        raise DamagedSweep(damaged_message(sweep_dir, problems))
    sweep["path"] = str(sweep_dir)
    return sweep


def damaged_message(sweep_dir: Path, problems: list[str]) -> str:
    return (
        f"Sweep {Path(sweep_dir).name} is damaged: {'; '.join(problems)}. Restore {Path(sweep_dir) / 'sweep.json'},"
        " or delete the folder (its runs stay in the runs table)."
    )


def damaged_entry(sweep_dir: Path, reason: str) -> dict[str, Any]:
    """How a damaged sweep is listed: by its folder's name, with no runs and the reason."""
    return {
        "name": Path(sweep_dir).name,
        "status": "damaged",
        "error": reason,
        "runs": [],
        "grid": {},
        "path": str(sweep_dir),
    }


def update_sweep(sweep_dir: Path, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Read, change and rewrite ``sweep.json`` under a lock: the scheduler and the page's Stop both write."""
    sweep_dir = Path(sweep_dir)
    if not (sweep_dir / "sweep.json").is_file():
        raise FileNotFoundError(f"{sweep_dir} is not a sweep folder (no sweep.json)")
    try:
        lock = open(sweep_dir / ".sweep.lock", "a")  # noqa: SIM115  (closed below, after the rewrite)
    except OSError as err:
        raise SweepError(
            f"sweep {sweep_dir.name} cannot be locked for a change ({err.strerror} on {sweep_dir / '.sweep.lock'});"
            " give your user write access to its folder"
        ) from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        sweep = read_sweep(sweep_dir)
        change(sweep)
        sweep.pop("path", None)
        try:
            atomic.write_json(sweep_dir / "sweep.json", sweep)
        except OSError as err:
            reason = atomic.why_not_written(err.filename or sweep_dir / "sweep.json", err)
            raise SweepError(f"sweep {sweep_dir.name} was not changed: {reason}") from None
        sweep["path"] = str(sweep_dir)
        return sweep
