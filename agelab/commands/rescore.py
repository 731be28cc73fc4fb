"""``python -m agelab rescore RUN ...``: runs' saved models scored on the shared test split
(:mod:`agelab.evaluation.shared_split`), one JSON line of each run's summary."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agelab import atomic
from agelab.evaluation.shared_split import score_run
from agelab.launchers import LaunchError, find_run
from agelab.training.errors import RunError


def cli(argv: list[str]) -> int:
    """``python -m agelab rescore RUN ...``: 0 when every run was scored, 1 when one could not be."""
    parser = argparse.ArgumentParser(
        prog="python -m agelab rescore",
        description="Score runs' saved models on the saved test split of the default dataset, so their "
        "test metrics compare (each run's own test split depends on its data).",
    )
    parser.add_argument("runs", nargs="+", help="run folders, or run names under the runs folder")
    args = parser.parse_args(argv)
    failed = 0
    for name in args.runs:
        try:
            run_dir = Path(name) if Path(name).is_dir() else find_run(name)
            summary = score_run(run_dir)
        except (OSError, ValueError, LaunchError, RunError) as err:
            print(f"agelab rescore: {name}: {err}", file=sys.stderr)
            failed += 1
            continue
        print(atomic.dumps(summary), flush=True)
    return 1 if failed else 0
