"""A run's own scores: the model's raw outputs on a split (for calibration), and its test predictions
and metrics, made by ``evaluate``'s own path from the saved model, so they are ``evaluate``'s to the bit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from agelab.bins import BinScheme, get_scheme
from agelab.evaluation.metrics import run_metrics
from agelab.evaluation.ranges import score_against_ranges
from agelab.evaluation.scoring import predict_frame
from agelab.training.errors import RunError


def raw_outputs(
    model: Any, frame: pd.DataFrame, scheme: BinScheme, image_size: int, batch: int
) -> dict[str, np.ndarray]:
    """The model's raw predictions on ``frame``'s images, in order."""
    from agelab import calibration, pipeline

    ds, steps = pipeline.image_dataset(
        frame, scheme, image_size, batch, training=False, cache="none", repeat=False, with_labels=False
    )
    return calibration.raw_predictions(model.predict(ds, steps=steps, verbose=0))


def scored_test_split(model_path: Path, test: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, float], str]:
    """The test split's predictions table (a run saves it as ``predictions.parquet``), its metrics
    under the names ``metrics.json`` keeps (``test_bin_accuracy``, ``test_within_one_bin``,
    ``test_age_mae``, ``test_gender_accuracy``, ``n_test``), and which backend served them.

    The saved model is loaded from ``model_path`` as ``evaluate`` loads it (a
    :class:`~agelab.predictor.Predictor`: its LiteRT twin when it has one) and the images go through
    evaluate's :func:`~agelab.evaluation.scoring.predict_frame` (aligned crops for a model trained on
    them), so the table and metrics are what ``python -m agelab evaluate`` gives on these images."""
    from agelab.predictor import Predictor

    predictor = Predictor(model_path)
    predictions, skipped = predict_frame(predictor, test)
    if "age_low" in test:
        predictions = score_against_ranges(predictions, test, get_scheme(predictor.scheme))
    if skipped:
        first = skipped[0]
        raise RunError(
            f"{len(skipped)} test image(s) could not be scored, {first['file']} first: {first['reason']}"
        )
    return predictions, run_metrics(predictions, predictor.scheme), predictor.backend_note


def metrics_by_source(
    predictions: pd.DataFrame, test: pd.DataFrame, bins: str
) -> dict[str, dict[str, float]]:
    """The test metrics of each data source apart (``metrics.json``'s ``sources``), matched by path."""
    if "source" not in test:
        return {}
    source_of = dict(zip(test["path"].astype(str), test["source"]))
    sources = predictions["path"].astype(str).map(source_of)
    return {
        str(name): run_metrics(predictions[sources == name].reset_index(drop=True), bins)
        for name in sources.dropna().unique()
    }
