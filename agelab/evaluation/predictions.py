"""The predictions contract: one row per image, the truth beside what a model said.

A predictions table (docs/architecture.md) has the columns ``path, age, gender, race, true_bin,
pred_bin, bin_prob_0..K-1, pred_age, pred_gender, prob_female``. :func:`predictions_frame` is the
one builder of such tables (runs' test predictions, ``evaluate``, Review's default-model table);
:func:`with_derived_columns` adds what the metrics, the gallery and the Review page compute from it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from agelab.bins import BinScheme, get_scheme
from agelab.data import GENDERS, RACES

PREDICTION_COLUMNS = [
    "path",
    "age",
    "gender",
    "race",
    "true_bin",
    "pred_bin",
    "pred_age",
    "pred_gender",
    "prob_female",
]


def bin_prob_columns(frame: pd.DataFrame) -> list[str]:
    """The ``bin_prob_<k>`` columns in bin order."""
    cols = [c for c in frame.columns if c.startswith("bin_prob_")]
    return sorted(cols, key=lambda c: int(c.rsplit("_", 1)[1]))


def check_predictions(frame: pd.DataFrame, where: str = "predictions") -> None:
    """Raise a ValueError naming every contract column that ``frame`` lacks."""
    missing = [c for c in PREDICTION_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{where} lacks column(s) {', '.join(missing)} of the predictions contract")


def load_predictions(path: str | Path) -> pd.DataFrame:
    """Read a ``predictions.parquet`` and check it against the contract."""
    frame = pd.read_parquet(path)
    check_predictions(frame, str(path))
    return frame


def rebin(predictions: pd.DataFrame, scheme: BinScheme) -> pd.DataFrame:
    """The predictions under another scheme: true bins from ``age``, predicted bins from ``pred_age``.

    The bin probabilities belong to the model's own scheme, so they are dropped.
    """
    out = predictions.drop(columns=bin_prob_columns(predictions))
    out["true_bin"] = scheme.bin_of(out["age"].to_numpy())
    out["pred_bin"] = scheme.bin_of(out["pred_age"].to_numpy())
    return out


def joined_outputs(parts: Mapping[str, Sequence[Any]], native: BinScheme) -> dict[str, np.ndarray]:
    """Per-batch model outputs (``age_bin``, ``age``, ``prob_female``) joined in order into the
    ``outputs`` of :func:`predictions_frame`; empty arrays of the right width when there were none."""
    return {
        key: np.concatenate(batches)
        if len(batches)
        else np.zeros((0, native.num_bins if key == "age_bin" else 1))
        for key, batches in parts.items()
    }


def predictions_frame(
    records: pd.DataFrame | Sequence[Mapping[str, Any]],
    outputs: Mapping[str, Any],
    native: BinScheme | str,
    scheme: BinScheme | str | None = None,
) -> pd.DataFrame:
    """THE builder of a predictions-contract table, for every producer of one.

    ``records``: one label record per image, in the order of ``outputs``, with ``path``, ``age``,
    ``gender``, ``race`` and optionally ``face_found`` (kept as a column when any record has it);
    a DataFrame with those columns will do. ``outputs``: the model's finalized outputs
    (:func:`agelab.calibration.finalize`), ``age_bin`` (n x bins of ``native``), ``age`` and
    ``prob_female`` (n each). ``native``: the scheme the model predicts in; ``scheme`` (default
    ``native``): the one to report in.

    Under the model's own scheme ``pred_bin`` is the most probable bin and the probabilities are
    kept as ``bin_prob_<k>``; under another scheme both bins come from ages (true from ``age``,
    predicted from ``pred_age``) and there are no probabilities. ``pred_gender`` is 1 (female)
    when ``prob_female`` >= 0.5.
    """
    native = get_scheme(native)
    scheme = native if scheme is None else get_scheme(scheme)
    if isinstance(records, pd.DataFrame):
        frame = records[["path", "age", "gender", "race"]].reset_index(drop=True)
        found = list(records["face_found"]) if "face_found" in records else []
    else:
        frame = pd.DataFrame(list(records), columns=["path", "age", "gender", "race"])
        found = [r.get("face_found") for r in records]
    if any(f is not None for f in found):
        frame["face_found"] = found
    probs = np.asarray(outputs["age_bin"], dtype=float).reshape(len(frame), native.num_bins)
    pred_age = np.asarray(outputs["age"], dtype=float).reshape(-1)
    prob_female = np.asarray(outputs["prob_female"], dtype=float).reshape(-1)
    if scheme.spec == native.spec:
        frame["true_bin"] = native.bin_of(frame["age"].to_numpy())
        frame["pred_bin"] = probs.argmax(axis=1) if len(frame) else np.zeros(0, dtype=int)
        for k in range(probs.shape[1]):
            frame[f"bin_prob_{k}"] = probs[:, k]
    else:
        frame["true_bin"] = scheme.bin_of(frame["age"].to_numpy())
        frame["pred_bin"] = scheme.bin_of(pred_age)
    frame["pred_age"] = pred_age
    frame["pred_gender"] = (prob_female >= 0.5).astype(int)
    frame["prob_female"] = prob_female
    return frame


def with_derived_columns(
    predictions: pd.DataFrame, native: BinScheme | str, scheme: BinScheme | str | None = None
) -> pd.DataFrame:
    """The predictions with the columns every view needs.

    ``native`` is the scheme the bins were predicted in; when ``scheme`` differs, the table is
    rebinned (:func:`rebin`). Added: ``distance`` (predicted minus true bin), ``abs_distance``,
    ``direction`` (over / under / exact), ``confidence`` (probability of the predicted bin, NaN
    after rebinning), ``age_error`` (predicted minus true age), ``abs_age_error``,
    ``gender_correct``, and display labels ``true_label``, ``pred_label``, ``gender_label``,
    ``ethnicity``, ``pred_gender_label``.
    """
    check_predictions(predictions)
    native = get_scheme(native)
    scheme = native if scheme is None else get_scheme(scheme)
    frame = predictions.copy() if scheme.spec == native.spec else rebin(predictions, scheme)
    frame = frame.reset_index(drop=True)
    frame["true_bin"] = frame["true_bin"].astype(int)
    frame["pred_bin"] = frame["pred_bin"].astype(int)
    distance = BinScheme.distance(frame["true_bin"].to_numpy(), frame["pred_bin"].to_numpy())
    frame["distance"] = distance
    frame["abs_distance"] = np.abs(distance)
    frame["direction"] = np.select([distance > 0, distance < 0], ["over", "under"], "exact")
    probs = bin_prob_columns(frame)
    if probs:
        matrix = frame[probs].to_numpy(dtype=float)
        frame["confidence"] = matrix[np.arange(len(frame)), np.clip(frame["pred_bin"], 0, len(probs) - 1)]
    else:
        frame["confidence"] = np.nan
    frame["age_error"] = frame["pred_age"].astype(float) - frame["age"].astype(float)
    frame["abs_age_error"] = frame["age_error"].abs()
    frame["gender_correct"] = frame["pred_gender"].astype(int) == frame["gender"].astype(int)
    labels = np.array(scheme.labels)
    frame["true_label"] = labels[frame["true_bin"].to_numpy()]
    frame["pred_label"] = labels[frame["pred_bin"].to_numpy()]
    frame["gender_label"] = frame["gender"].map(GENDERS)
    frame["pred_gender_label"] = frame["pred_gender"].map(GENDERS)
    frame["ethnicity"] = frame["race"].map(RACES)
    # A run's sources are folders: each image's source is the folder it sits in.
    frame["source"] = frame["path"].astype(str).map(lambda p: os.path.basename(os.path.dirname(p)))
    frame.attrs["scheme"] = scheme.spec
    return frame
