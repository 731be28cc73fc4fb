"""Where predictions tables live: runs' test predictions, saved evaluations, and the shipped default
model's scores on the test split (computed once and cached)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agelab import atomic, schemas
from agelab.bins import get_scheme
from agelab.evaluation.scoring import predict_frame, uses_aligned_crops


@dataclass(frozen=True)
class PredictionSource:
    """A predictions table the Review page can open: a run's, or one the evaluate verb saved."""

    name: str
    predictions: Path
    bins: str
    kind: str  # "run" or "evaluation"
    info: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    # Why it cannot be reviewed (its saved bins name no scheme), in one sentence; "" when it can.
    problem: str = ""


def scheme_spec(bins: Any) -> str:
    """A saved ``bins`` under its current name (an old run's ``seed10`` is ``groups10``); one that
    does not parse is kept as it was written."""
    try:
        return get_scheme(str(bins)).spec
    except ValueError:
        return str(bins)


def evaluations_dir() -> Path:
    """Where ``evaluate`` saves predictions when no ``--out`` is given."""
    from agelab.paths import runs_dir

    return runs_dir() / "evaluations"


def list_sources() -> list[PredictionSource]:
    """Runs that have test-split predictions (newest first), then saved evaluations (newest first)."""
    from agelab.runs import list_runs

    sources = []
    for run in list_runs():
        if not (run.path / "predictions.parquet").is_file():
            continue
        bins, problem = schemas.evaluation_bins(run.config, f"{run.path / 'config.json'}")
        sources.append(
            PredictionSource(run.name, run.path / "predictions.parquet", bins, "run", run.config, problem)
        )
    folder = evaluations_dir()
    if folder.is_dir():
        saved = sorted(folder.glob("*.parquet"), key=lambda p: p.stat().st_mtime, reverse=True)
        for predictions in saved:
            summary = predictions.with_suffix(".json")
            info = atomic.read_cache_json(summary, {})
            info = info if isinstance(info, dict) else {}
            bins, problem = schemas.evaluation_bins(info, str(summary))
            sources.append(
                PredictionSource(
                    f"evaluation: {predictions.stem}", predictions, bins, "evaluation", info, problem
                )
            )
    return sources


def default_model_source() -> PredictionSource | None:
    """The shipped default model's predictions on the saved test split, computed once and saved.

    This is what lets a fresh clone review a model before training anything. The table is redone
    when the model file changes.
    """
    from agelab.model_files import DEFAULT_MODEL_NAME, default_model
    from agelab.paths import models_dir
    from agelab.predictor import load_predictor
    from agelab.saved_split import load_dataset

    model = default_model()
    if model is None or model.parent.resolve() != models_dir().resolve():
        return None  # a run's model: its run folder already holds its test predictions

    out = evaluations_dir() / f"{model.stem}-on-test-split.parquet"
    stat = model.stat()
    predictor = load_predictor(model)
    detect = uses_aligned_crops(predictor)
    # The input path is part of the stamp: a table made from whole images is redone for a model
    # that takes aligned crops (and the reverse), so Review shows what `evaluate` gives.
    stamp = f"{stat.st_size}-{stat.st_mtime_ns}-{'aligned' if detect else 'whole'}"
    info = atomic.read_cache_json(out.with_suffix(".json"), {})
    info = info if isinstance(info, dict) else {}
    if not out.is_file() or info.get("model_stamp") != stamp:
        frame, skipped = predict_frame(predictor, load_dataset().query("split == 'test'"))
        atomic.write_parquet(out, frame)
        bins = get_scheme(predictor.scheme).spec
        info = {"model": str(model), "model_stamp": stamp, "data": "test split", "bins": bins}
        info["default_model"] = model.name == DEFAULT_MODEL_NAME
        info["skipped"] = len(skipped)
        atomic.write_json(out.with_suffix(".json"), info)
    return PredictionSource(f"evaluation: {out.stem}", out, scheme_spec(info["bins"]), "evaluation", info)
