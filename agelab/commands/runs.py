"""``python -m agelab runs [list|submit|watch|logs|stop]``: runs listed, launched (here or on a Ray
cluster), followed, and stopped, through :mod:`agelab.launchers`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from agelab import atomic, launchers, runs, schemas
from agelab.config import ConfigError, parse_overrides
from agelab.launchers import (
    RAY_ADDRESS_ENV,
    LaunchError,
    get_launcher,
    launcher_for,
    list_runs,
    ray_address,
    ray_missing,
)
from agelab.paths import runs_dir
from agelab.run_display import progress_text


def watch(run_dir: Path, every: float = 5.0, say=print) -> dict[str, Any]:
    """Print the run's progress until it ends; return its final status."""
    launcher = launcher_for(run_dir)
    last = None
    while True:
        status = launcher.status(run_dir)
        problems: list[str] = []
        schemas.read_status(run_dir, problems)
        progress = schemas.read_progress(run_dir, problems)
        if problems:  # a damaged run never ends by itself: say why and stop watching
            say(f"{run_dir.name}: damaged")
            error = f"Run {run_dir.name} is damaged: {'; '.join(problems)}. Delete it, or restore the file."
            return {**status, "status": "damaged", "error": error}
        line = f"{run_dir.name}: {status.get('status')}"
        if status.get("status") in runs.ACTIVE:
            line += " · " + progress_text(progress)
        if line != last:
            say(line)
            last = line
        if status.get("status") not in runs.ACTIVE:
            return status
        time.sleep(every)


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agelab runs",
        description="List, launch, watch and stop runs, on this machine or on a Ray cluster"
        f" (--ray ADDRESS or {RAY_ADDRESS_ENV}).",
    )
    sub = parser.add_subparsers(dest="action")
    sub.add_parser("list", help="the runs table (the default)")
    submit = sub.add_parser("submit", help="launch one run: key=value ... (python -m agelab train's keys)")
    submit.add_argument("overrides", nargs="*", metavar="key=value")
    submit.add_argument("--ray", default=None, help=f"a Ray dashboard address (default: {RAY_ADDRESS_ENV})")
    submit.add_argument("--watch", action="store_true", help="follow it until it ends")
    for verb, text in (
        ("watch", "follow a run until it ends"),
        ("logs", "a run's log"),
        ("stop", "stop a run"),
    ):
        sub.add_parser(verb, help=text).add_argument("run", help="its name (runs/<name>) or folder")
    args = parser.parse_args(argv)
    try:
        if args.action in (None, "list"):
            table = runs.runs_table(list_runs())
            columns = ["run", "status", "model", "age_mae", "device", "launcher", "job_id", "sweep"]
            print(table[columns].to_string(index=False) if len(table) else f"no runs in {runs_dir()}")
            return 0
        if args.action == "submit":
            address = ray_address(args.ray)
            if address and (missing := ray_missing(address)):
                print(f"agelab runs: {missing}", file=sys.stderr)
                return 2
            run_dir = get_launcher(address).submit(parse_overrides(args.overrides))
            print(run_dir, flush=True)
            if not args.watch:
                return 0
            return 0 if watch(run_dir).get("status") == "finished" else 3
        run_dir = launchers.find_run(args.run)
        if args.action == "watch":
            status = watch(run_dir)
            print(status.get("error") or ", ".join(
                f"{k}={v}" for k, v in schemas.read_metrics(run_dir, []).items() if k.startswith("test_")
            ))  # fmt: skip
            return 0 if status.get("status") == "finished" else 3
        launcher = launcher_for(run_dir)
        print(
            launcher.logs(run_dir) if args.action == "logs" else f"{run_dir.name}: {launcher.stop(run_dir)}"
        )
        return 0
    except (ConfigError, LaunchError) as err:
        print(f"agelab runs: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk or a read-only runs folder; a run folder this user cannot read
        if args.action == "submit":
            print(f"agelab runs: no run made: {atomic.why_not_written(runs_dir(), err)}", file=sys.stderr)
        else:
            print(
                f"agelab runs: cannot read {err.filename or runs_dir()} ({err.strerror or err})",
                file=sys.stderr,
            )
        return 1
