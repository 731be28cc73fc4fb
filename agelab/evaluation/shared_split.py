"""Runs scored on one test split: each run's model evaluated on the saved test split of the default
dataset (``data/UTKFace``), so that runs trained on other data (several sources, a subset, marked
faces left out) compare on the same faces.

``python -m agelab rescore RUN ...`` (:mod:`agelab.commands.rescore`) scores them, each into ``runs/evaluations/<run>-on-shared-test-
split.parquet`` (Review lists it) with a summary beside it; the pages start it in the background
(:func:`start`) and their comparison tables then read those scores (:func:`with_shared_scores`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pandas as pd

from agelab import atomic
from agelab.evaluation.sources import evaluations_dir
from agelab.metric_names import METRICS
from agelab.runs import TABLE_METRICS

SUFFIX = "-on-shared-test-split"
# runs_table's columns, filled from a shared score where the run has one.
TABLE_COLUMNS = {
    **{METRICS[name].column: METRICS[name].run_key for name in TABLE_METRICS},
    "test_set": "scored_on",
}


def shared_out(run_name: str) -> Path:
    return evaluations_dir() / f"{run_name}{SUFFIX}.parquet"


def test_set_id(test: pd.DataFrame) -> str:
    """The identity of a test set, as a run records it (``scored_on``): a hash of its images' md5s."""
    return hashlib.sha1("\n".join(sorted(test["md5"].astype(str))).encode()).hexdigest()[:12]


def _model_stamp(model: Path) -> str:
    stat = model.stat()
    return f"{stat.st_size}-{stat.st_mtime_ns}"


def shared_scores(run_dir: str | Path) -> dict[str, Any] | None:
    """A run's scores on the shared test split (``metrics.json``'s names, ``scored_on`` included), or
    None when it was not scored there, or its model changed since."""
    run_dir = Path(run_dir)
    summary = atomic.read_cache_json(shared_out(run_dir.name).with_suffix(".json"), None)
    model = run_dir / "model.keras"
    if (
        not isinstance(summary, dict)
        or not model.is_file()
        or summary.get("model_stamp") != _model_stamp(model)
    ):
        return None
    return summary


def score_run(run_dir: str | Path, log: Any = print) -> dict[str, Any]:
    """Score a run's saved model on the shared test split; returns (and saves) its summary."""
    from agelab.saved_split import load_dataset
    from agelab.training.run_scores import scored_test_split

    run_dir = Path(run_dir)
    model = run_dir / "model.keras"
    if not model.is_file():
        raise FileNotFoundError(f"{run_dir.name} has no saved model ({model}); it cannot be scored")
    test = load_dataset().query("split == 'test'").reset_index(drop=True)
    log(f"{run_dir.name}: scoring {len(test):,} test faces of the shared split")
    predictions, metrics, served = scored_test_split(model, test)
    out = shared_out(run_dir.name)
    atomic.write_parquet(out, predictions)
    summary = {
        **metrics,
        "scored_on": test_set_id(test),
        "run": run_dir.name,
        "model": str(model),
        "model_stamp": _model_stamp(model),
        "data": "shared test split",
        "bins": str(predictions.attrs.get("scheme") or _bins(run_dir)),
        "served": served,
    }
    atomic.write_json(out.with_suffix(".json"), summary)
    return summary


def _bins(run_dir: Path) -> str:
    config = atomic.read_cache_json(run_dir / "config.json", {})
    return str(config.get("bins", "groups10")) if isinstance(config, dict) else "groups10"


def with_shared_scores(table: pd.DataFrame) -> pd.DataFrame:
    """``runs_table`` rows with each run's shared-split scores in place of its own test scores, where
    it has them; a ``scored on`` column says which each row shows."""
    table = table.copy()
    table["scored_on_split"] = "its own test split"
    for i, path in table["path"].items():
        scores = shared_scores(path)
        if scores is None:
            continue
        for column, key in TABLE_COLUMNS.items():
            table.loc[i, column] = scores.get(key)
        table.loc[i, "scored_on_split"] = "shared test split"
    return table


def start(run_dirs: list[Path]) -> Path:
    """``python -m agelab rescore`` of ``run_dirs`` in the background; returns its log file."""
    from agelab.processes import spawn

    log = evaluations_dir() / "rescore.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    spawn(["rescore", *(str(p) for p in run_dirs)], log)
    return log


def test_set_difference(first: pd.DataFrame, second: pd.DataFrame, names: tuple[str, str]) -> str | None:
    """One sentence when two predictions tables were scored on different images (their metrics do not
    compare), else None."""
    a = set(first["path"].map(lambda p: Path(str(p)).name))
    b = set(second["path"].map(lambda p: Path(str(p)).name))
    if a == b:
        return None
    return (
        f"{names[0]} was scored on {len(a):,} images and {names[1]} on {len(b):,} ({len(a & b):,} in "
        "both): their metrics are not comparable until both are scored on one test split."
    )
