"""Sweeps: a grid of runs (``python -m agelab sweep key=a,b other=x,y``, its command line in
:mod:`agelab.commands.sweep`), launched under a concurrency limit; :mod:`agelab.sweep_compare`
compares their results.

A sweep lives in ``runs/sweeps/<name>-<n>/sweep.json`` (written atomically, under a lock): the grid,
the backend, the limit, and one entry per run (``pending``, ``launched`` with its run folder,
``cancelled`` or ``not_launched`` with the reason). Local runs wait in that queue: the sweep verb (or
the detached scheduler the Train page starts, ``sweep --resume``) stays alive and launches the next
run when a slot frees. Ray runs are all handed to Ray, which queues them by the CPUs and GPUs each
reserves; a ``--max-concurrent`` limit, when given, is applied to them too. Each run's ``status.json``
names its sweep (``sweep``), so the runs table groups them.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agelab import atomic, runs
from agelab.config import ConfigError, build_config, checked_config, parse_overrides
from agelab.paths import runs_dir
from agelab.processes import pid_alive, spawn
from agelab.sweep_records import DamagedSweep, damaged_entry, read_sweep, sweeps_root, update_sweep

ENTRY_STATES = ("pending", "launched", "cancelled", "not_launched")
POLL_S = 2.0


# ---------------------------------------------------------------- the grid


def split_values(key: str, value: str) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]``; ``|`` separates too (``bins=0,3,13,20|groups10``). A ``bins`` value
    with commas is one custom scheme unless every piece is a scheme name (``bins=groups10,decades``)."""
    from agelab.bins import is_scheme_name

    if "|" in value:
        parts = value.split("|")
    elif key == "bins" and not all(is_scheme_name(p) for p in value.split(",")):
        parts = [value]
    else:
        parts = value.split(",")
    parts = [p.strip() for p in parts]
    if len(parts) > 1 and not all(parts):
        raise ConfigError(f"bad value {key}={value!r}: an empty value in the list; write {key}=a,b")
    return list(dict.fromkeys(parts))  # a repeated value is one run, not two


def parse_grid(items: list[str]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """``["epochs=1,2", "model=baseline_cnn"]`` -> (swept ``{"epochs": ["1", "2"]}``, fixed ``{"model": ...}``)."""
    grid: dict[str, list[str]] = {}
    fixed: dict[str, str] = {}
    for key, value in parse_overrides(items).items():
        values = split_values(key, value)
        if len(values) > 1:
            grid[key] = values
        else:
            fixed[key] = values[0]
    if "name" in grid:
        raise ConfigError("bad value name=...: a sweep's runs share its name; give one name (or --name)")
    return grid, fixed


def expand(
    grid: dict[str, list[str]], fixed: dict[str, Any], base: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Every combination of the grid over ``fixed`` and ``base``, each validated:
    ``[{"overrides": {key: value}, "config": {...}}]``. A combination that cannot run rejects the
    whole sweep (nothing is launched), naming it."""
    keys = list(grid)
    entries = []
    for combo in itertools.product(*(grid[k] for k in keys)) if keys else [()]:
        swept = dict(zip(keys, combo))
        try:
            config = checked_config(build_config({**fixed, **swept}, base=base))
        except ConfigError as err:
            where = ", ".join(f"{k}={v}" for k, v in swept.items()) or "the fixed keys"
            raise ConfigError(f"sweep run {len(entries) + 1} ({where}): {err}") from None
        entries.append({"overrides": {k: config[k] for k in keys}, "config": config})
    return entries


# ---------------------------------------------------------------- the queue


def create_sweep(
    grid: dict[str, list[str]],
    fixed: dict[str, Any],
    *,
    name: str = "",
    base: dict[str, Any] | None = None,
    ray_address: str = "",
    max_concurrent: int | None = None,
    root: Path | None = None,
) -> Path:
    """Validate every run of the grid, then write ``runs/sweeps/<name>-<n>/sweep.json`` with all of
    them ``pending``. ``max_concurrent`` defaults to 1 for local runs and no limit on Ray."""
    from agelab.launchers import dashboard_url

    if max_concurrent is not None and max_concurrent < 0:
        raise ConfigError(f"bad value --max-concurrent {max_concurrent}: give 1 or more (0: no limit)")
    entries = expand(grid, fixed, base)
    if ray_address:
        from agelab.launchers import RayLauncher

        RayLauncher(ray_address).client  # noqa: B018 -- a missing ray or an unreachable cluster: no sweep
    name = (
        runs.SAFE_NAME.sub("_", name or fixed.get("name") or "sweep").strip("_")[: runs.MAX_NAME] or "sweep"
    )
    if max_concurrent is None:
        max_concurrent = 0 if ray_address else 1
    folder = sweeps_root(root)
    folder.mkdir(parents=True, exist_ok=True)
    n = 1 + max(
        (int(m["n"]) for p in folder.iterdir() if (m := runs.RUN_NAME.match(p.name)) and m["name"] == name),
        default=0,
    )
    while True:
        sweep_dir = folder / f"{name}-{n}"
        try:
            sweep_dir.mkdir()
            break
        except FileExistsError:
            n += 1
    sweep = {
        "name": sweep_dir.name,
        "created": runs.now(),
        "backend": "ray" if ray_address else "local",
        "ray_address": dashboard_url(ray_address) if ray_address else None,
        "max_concurrent": max_concurrent or None,
        "runs_dir": str(Path(root or runs_dir()).resolve()),
        "grid": grid,
        "fixed": fixed,
        "status": "pending",
        "runs": [
            {"index": i + 1, "state": "pending", "run": None, **entry} for i, entry in enumerate(entries)
        ],
    }
    for entry in sweep["runs"]:
        entry["config"]["name"] = name
    try:
        atomic.write_json(sweep_dir / "sweep.json", sweep)
    except OSError:
        shutil.rmtree(sweep_dir, ignore_errors=True)  # no half-made sweep left behind (a full disk)
        raise
    return sweep_dir


def launcher_of(sweep: dict[str, Any]):
    from agelab.launchers import LocalLauncher, RayLauncher

    return RayLauncher(sweep["ray_address"]) if sweep.get("backend") == "ray" else LocalLauncher()


def run_queue(
    sweep_dir: Path,
    launcher=None,
    *,
    wait: bool = False,
    poll: float = POLL_S,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The scheduler: launch pending runs while fewer than ``max_concurrent`` of the sweep's runs are
    active; return when every run is launched (and, with ``wait``, ended) or the sweep is stopped."""
    from agelab.launchers import LaunchError

    sweep_dir = Path(sweep_dir)
    sweep = read_sweep(sweep_dir)
    launcher = launcher or launcher_of(sweep)
    root = Path(sweep["runs_dir"])

    def mark_running(s: dict[str, Any]) -> None:
        s.update(status="running", scheduler={"pid": os.getpid(), "host": socket.gethostname()})

    update_sweep(sweep_dir, mark_running)
    while True:
        sweep = read_sweep(sweep_dir)
        if sweep.get("stop_requested"):
            break
        launched = [e for e in sweep["runs"] if e["state"] == "launched"]
        active = sum(launcher.status(Path(e["run"])).get("status") in runs.ACTIVE for e in launched)
        pending = [e for e in sweep["runs"] if e["state"] == "pending"]
        if not pending and (not wait or not active):
            break
        limit = sweep.get("max_concurrent") or len(sweep["runs"])
        for entry in pending[: max(0, limit - active)]:
            try:
                run_dir = launcher.submit(entry["config"], root, sweep=sweep["name"])
                change = {"state": "launched", "run": str(run_dir)}
                say(f"launched {run_dir} ({', '.join(f'{k}={v}' for k, v in entry['overrides'].items())})")
            except (ConfigError, LaunchError, OSError) as err:
                change = {"state": "not_launched", "error": str(err)}
                say(f"not launched: run {entry['index']}: {err}")

            def record(s: dict[str, Any], index: int = entry["index"], change: dict = change) -> None:
                s["runs"][index - 1].update(change)
                s["heartbeat"] = runs.now()

            update_sweep(sweep_dir, record)
        update_sweep(sweep_dir, lambda s: s.update(heartbeat=runs.now()))
        time.sleep(poll)

    def finish(s: dict[str, Any]) -> None:
        s["status"] = "stopped" if s.get("stop_requested") else "launched"
        s["ended"] = runs.now()

    return update_sweep(sweep_dir, finish)


def start_detached(sweep_dir: Path) -> int:
    """The scheduler as its own process (``python -m agelab sweep --resume DIR``), as the Train page
    starts it: it goes on when the browser closes. Returns its pid."""
    return spawn(["sweep", "--resume", str(sweep_dir)], Path(sweep_dir) / "log.txt")


def stop_sweep(sweep_dir: Path) -> dict[str, int]:
    """Cancel the sweep's pending runs and stop its active ones (each through its own backend)."""
    from agelab.launchers import LaunchError, launcher_for

    def cancel(s: dict[str, Any]) -> None:
        s["stop_requested"] = runs.now()
        for entry in s["runs"]:
            if entry["state"] == "pending":
                entry["state"] = "cancelled"

    sweep = update_sweep(Path(sweep_dir), cancel)
    stopped = 0
    for entry in sweep["runs"]:
        if entry["state"] == "launched":
            try:
                stopped += launcher_for(Path(entry["run"])).stop(Path(entry["run"])) != "not running"
            except LaunchError:
                continue
    return {"cancelled": sum(e["state"] == "cancelled" for e in sweep["runs"]), "stopped": stopped}


def sweep_state(sweep: dict[str, Any]) -> str:
    """``pending``, ``running``, ``launched``, ``stopped``, or ``interrupted`` (its scheduler died with
    runs still queued: ``sweep --resume`` goes on)."""
    state = sweep.get("status", "pending")
    if state == "damaged":
        return state
    if state == "running" and any(e["state"] == "pending" for e in sweep["runs"]):
        sched = sweep.get("scheduler") or {}
        if sched.get("host") == socket.gethostname() and not pid_alive(sched.get("pid")):
            return "interrupted"
    return state


def list_sweeps(root: Path | None = None) -> list[dict[str, Any]]:
    """Every sweep, newest first."""
    folder = sweeps_root(root)
    out = []
    for path in folder.iterdir() if folder.is_dir() else ():
        try:
            out.append(read_sweep(path))
        except FileNotFoundError:
            continue
        except DamagedSweep as err:
            out.append(damaged_entry(path, str(err)))
    return sorted(out, key=lambda s: s.get("created") or 0, reverse=True)
