"""Sweeps: a grid of runs (``python -m agelab sweep key=a,b other=x,y``), launched under a concurrency
limit, and one table that compares their results.

A sweep lives in ``runs/sweeps/<name>-<n>/sweep.json`` (written atomically, under a lock): the grid,
the backend, the limit, and one entry per run (``pending``, ``launched`` with its run folder,
``cancelled`` or ``not_launched`` with the reason). Local runs wait in that queue: the sweep verb (or
the detached scheduler the Train page starts, ``sweep --resume``) stays alive and launches the next
run when a slot frees. Ray runs are all handed to Ray, which queues them by the CPUs and GPUs each
reserves; a ``--max-concurrent`` limit, when given, is applied to them too. Each run's ``status.json``
names its sweep (``sweep``), so the runs table groups them.
"""

from __future__ import annotations

import argparse
import fcntl
import itertools
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from agelab import atomic, runs, schemas
from agelab.config import ConfigError, build_config, checked_config, load_config_file, parse_overrides
from agelab.metric_names import TEST_KEYS
from agelab.paths import runs_dir
from agelab.processes import pid_alive, spawn

ENTRY_STATES = ("pending", "launched", "cancelled", "not_launched")
# The validation metrics a sweep is compared on (at each run's best epoch), lower-is-better first.
VAL_METRICS = ("val_loss", "val_age_bin_acc", "val_gender_acc", "val_age_mae")
LOWER_IS_BETTER = {"val_loss", "val_age_mae", "test_age_mae"}
TEST_METRICS = TEST_KEYS
POLL_S = 2.0


def sweeps_root(root: Path | None = None) -> Path:
    return Path(root or runs_dir()) / "sweeps"


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


# ---------------------------------------------------------------- the sweep folder


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


# ---------------------------------------------------------------- comparing results


def best_epoch_row(run: runs.Run) -> dict[str, Any]:
    """The validation metrics at the run's best epoch (lowest ``val_loss``); ``{}`` before its first epoch."""
    history = run.history
    if history.empty or "val_loss" not in history or history["val_loss"].isna().all():
        return {}
    row = history.loc[history["val_loss"].idxmin()]
    return {m: float(row[m]) for m in VAL_METRICS if m in row and pd.notna(row[m])}


def compare(sweep: dict[str, Any]) -> pd.DataFrame:
    """One row per run of the sweep: its swept values, state, validation metrics at its best epoch,
    test metrics, and ``best`` (True on the finished run with the lowest best ``val_loss``)."""
    keys = list(sweep.get("grid", {}))
    rows = []
    for entry in sweep["runs"]:
        row: dict[str, Any] = {
            "index": entry["index"],
            **entry["overrides"],
            "run": None,
            "state": entry["state"],
        }
        if entry["state"] == "launched" and entry.get("run"):
            try:
                run = runs.load_run(entry["run"])
            except FileNotFoundError:
                row["state"] = "missing"
            else:
                row.update(run=run.name, state=run.state, duration_s=run.duration_s)
                row.update(best_epoch_row(run))
                row.update({m: run.metrics.get(m) for m in TEST_METRICS})
        rows.append(row)
    table = pd.DataFrame(rows, columns=["index", *keys, "run", "state"] if not rows else None)
    for column in ("duration_s", *VAL_METRICS, *TEST_METRICS):
        if column not in table:
            table[column] = float("nan")
    table["best"] = False
    done = table[(table["state"] == "finished") & table["val_loss"].notna()]
    if not done.empty:
        table.loc[done["val_loss"].astype(float).idxmin(), "best"] = True
    return table[["index", *keys, "run", "state", "best", *VAL_METRICS, *TEST_METRICS, "duration_s"]]


def comparison_figure(table: pd.DataFrame, keys: list[str], metric: str = "val_loss"):
    """A scatter of ``metric`` against the first swept key, coloured by the second (the rest in the
    hover), with the best run marked by a star and named."""
    import plotly.express as px
    import plotly.graph_objects as go

    from agelab import palette

    data = table[table[metric].notna()].copy() if metric in table else table.iloc[0:0]
    x = keys[0] if keys else "index"
    color = keys[1] if len(keys) > 1 else None
    for key in [x, *([color] if color else [])]:
        data[key] = data[key].astype(str)
    fig = px.scatter(
        data,
        x=x,
        y=metric,
        color=color,
        hover_data=["run", *keys[2:], *[m for m in VAL_METRICS if m != metric]],
        labels={metric: palette.title(metric)},
        title=f"{palette.title(metric)} by {x}" + (f" and {color}" if color else ""),
    )
    fig.update_traces(marker={"size": 12})
    best = data[data["best"]]
    if not best.empty:
        row = best.iloc[0]
        fig.add_trace(
            go.Scatter(
                x=[row[x]],
                y=[row[metric]],
                mode="markers+text",
                marker={
                    "symbol": "star",
                    "size": 22,
                    "color": "gold",
                    "line": {"width": 1, "color": "black"},
                },
                text=[f"best: {row['run']}"],
                textposition="top center",
                name="best (lowest val loss)",
            )
        )
    fig.update_xaxes(type="category")
    return fig


# ---------------------------------------------------------------- the verb


def format_table(table: pd.DataFrame) -> str:
    shown = table.drop(columns=["duration_s"]).copy()
    shown["best"] = shown["best"].map({True: "*", False: ""})
    return shown.to_string(index=False, float_format=lambda v: f"{v:.4g}")


def cli(argv: list[str]) -> int:
    from agelab import tune
    from agelab.launchers import LaunchError, ray_address, ray_missing

    if tune.wanted(argv):  # search=random|asha: through Ray Tune (agelab.tune)
        return tune.cli(argv)

    parser = argparse.ArgumentParser(
        prog="python -m agelab sweep",
        description=(
            "Launch a grid of training runs: every combination of the listed values, e.g."
            " python -m agelab sweep model=baseline_cnn weights=none epochs=1,2 learning_rate=0.001,0.0003."
            " Values split on commas (or on | for bins' comma-separated edges)."
        ),
    )
    parser.add_argument("overrides", nargs="*", metavar="key=a,b")
    parser.add_argument("--config", help="a YAML or JSON file of key: value under the grid")
    parser.add_argument("--name", default="", help="the sweep's name (its runs are <name>-<n>)")
    parser.add_argument(
        "--max-concurrent",
        type=int,
        default=None,
        help="runs at once (default: 1 locally; on Ray no limit: Ray queues by each run's num_cpus/num_gpus)",
    )
    parser.add_argument("--ray", default=None, help="a Ray dashboard address (default: AGELAB_RAY_ADDRESS)")
    parser.add_argument(
        "--wait", action="store_true", help="stay until every run ended; print the comparison"
    )
    parser.add_argument("--resume", help="go on with an existing sweep folder's queue")
    parser.add_argument("--stop", metavar="SWEEP_DIR", help="cancel a sweep's queue and stop its runs")
    args = parser.parse_args(argv)
    if args.stop:
        try:
            print(f"{args.stop}: {stop_sweep(Path(args.stop))}")
        except (FileNotFoundError, ValueError, OSError) as err:
            print(f"agelab sweep: {err}", file=sys.stderr)
            return 2
        return 0
    try:
        if args.resume:
            sweep_dir = Path(args.resume)
            read_sweep(sweep_dir)
        else:
            address = ray_address(args.ray)
            if address and (missing := ray_missing(address)):
                print(f"agelab sweep: {missing}", file=sys.stderr)
                return 2
            grid, fixed = parse_grid(args.overrides)
            base = load_config_file(args.config) if args.config else None
            sweep_dir = create_sweep(
                grid,
                fixed,
                name=args.name,
                base=base,
                ray_address=address,
                max_concurrent=args.max_concurrent,
            )
            sweep = read_sweep(sweep_dir)
            limit = sweep["max_concurrent"] or "no limit"
            print(
                f"sweep {sweep_dir}: {len(sweep['runs'])} runs on {sweep['backend']}"
                f" ({sweep['ray_address'] or 'this machine'}), at most {limit} at once",
                flush=True,
            )
    except (ConfigError, FileNotFoundError, SweepError) as err:
        print(f"agelab sweep: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk or a read-only runs folder
        print(f"agelab sweep: no sweep made: {atomic.why_not_written(sweeps_root(), err)}", file=sys.stderr)
        return 1
    try:
        sweep = run_queue(sweep_dir, wait=args.wait, say=lambda text: print(text, flush=True))
    except (LaunchError, SweepError) as err:
        print(f"agelab sweep: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"agelab sweep: {atomic.why_not_written(sweep_dir / 'sweep.json', err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"agelab sweep: interrupted; stopping the sweep: {stop_sweep(sweep_dir)}", file=sys.stderr)
        return 130
    if args.wait:
        print(format_table(compare(sweep)), flush=True)
    print(sweep_dir, flush=True)
    failed = [e for e in sweep["runs"] if e["state"] == "not_launched"]
    return 1 if failed else 0
