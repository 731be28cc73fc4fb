"""A run's own scores: the model's raw outputs on a split, and its test predictions and metrics,
made by evaluation's one predictions builder and one metrics function, as ``evaluate`` makes them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from agelab.bins import BinScheme
from agelab.evaluation.metrics import run_metrics
from agelab.evaluation.predictions import predictions_frame


def raw_outputs(
    model: Any, frame: pd.DataFrame, scheme: BinScheme, image_size: int, batch: int
) -> dict[str, np.ndarray]:
    """The model's raw predictions on ``frame``'s images, in order."""
    from agelab import calibration, pipeline

    ds, steps = pipeline.image_dataset(
        frame, scheme, image_size, batch, training=False, cache="none", repeat=False, with_labels=False
    )
    return calibration.raw_predictions(model.predict(ds, steps=steps, verbose=0))


def heads_outputs(
    built: Any, features: np.ndarray, frame: pd.DataFrame, scheme: BinScheme, image_size: int, batch: int
) -> dict[str, np.ndarray]:
    """The raw predictions of the heads on cached features of ``frame``'s images: while the backbone is
    unchanged they are the full model's, without running the backbone again. That is checked on one batch."""
    from agelab import calibration, pipeline

    outputs = built.heads.predict(features, batch_size=512, verbose=0)
    ds, _ = pipeline.image_dataset(
        frame, scheme, image_size, batch, training=False, cache="none", repeat=False, with_labels=False
    )
    check = built.model.predict(ds.take(1), verbose=0)
    gap = float(np.abs(check["age_bin"] - outputs["age_bin"][: len(check["age_bin"])]).max())
    if gap > 1e-3:
        raise RuntimeError(f"the assembled model disagrees with its trained heads (gap {gap:.2g})")
    return calibration.raw_predictions(outputs)


def scored(
    split: pd.DataFrame, raw: dict[str, np.ndarray], scheme: BinScheme, calibration_record: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, float]]:
    """A split's predictions table (a run saves its test split's as ``predictions.parquet``),
    calibrated and finalized as every prediction is (:func:`agelab.calibration.finalize`), and its
    metrics under the names ``metrics.json`` keeps (``test_bin_accuracy``, ``test_within_one_bin``,
    ``test_age_mae``, ``test_gender_accuracy``, ``n_test``)."""
    from agelab import calibration

    outputs = calibration.finalize(raw, scheme, calibration_record)
    predictions = predictions_frame(split[["path", "age", "gender", "race"]], outputs, scheme)
    return predictions, run_metrics(predictions, scheme)
