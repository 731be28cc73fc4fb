"""How far off a model is: headline numbers, distance distributions, confusion, per-bin and per-slice
metrics with intervals, and side-by-side comparisons.

Everything here reads a table from :func:`agelab.evaluation.predictions.with_derived_columns`,
except :func:`run_metrics`, which takes the raw predictions a run saves.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

from agelab.bins import BinScheme
from agelab.evaluation.intervals import bootstrap_mean_interval, wilson_interval
from agelab.evaluation.predictions import with_derived_columns
from agelab.metric_names import METRICS

SLICE_DIMENSIONS: dict[str, tuple[str, ...]] = {
    "all": (),
    "gender": ("gender_label",),
    "ethnicity": ("ethnicity",),
    "age bin": ("true_label",),
    "gender x ethnicity": ("gender_label", "ethnicity"),
    "gender x age bin": ("gender_label", "true_label"),
    "ethnicity x age bin": ("ethnicity", "true_label"),
    # The data source (the folder an image came from), for runs trained on several.
    "source": ("source",),
    "source x gender": ("source", "gender_label"),
}


def _rate(mask: pd.Series | np.ndarray) -> float:
    mask = np.asarray(mask)
    return float(mask.mean()) if len(mask) else math.nan


def headline(frame: pd.DataFrame) -> dict[str, Any]:
    """The headline numbers of a prepared table: bin accuracy (exact, within 1 and 2), age MAE,
    gender accuracy and ROC AUC, and the share of over- and under-estimates."""
    n = len(frame)
    abs_distance = frame["abs_distance"].to_numpy()
    gender = frame["gender"].to_numpy().astype(int)
    auc = None
    if n and len(np.unique(gender)) == 2:
        auc = float(roc_auc_score(gender, frame["prob_female"].to_numpy(dtype=float)))
    return {
        "n": int(n),
        "exact": _rate(abs_distance == 0),
        "within1": _rate(abs_distance <= 1),
        "within2": _rate(abs_distance <= 2),
        "mean_abs_distance": float(abs_distance.mean()) if n else math.nan,
        "over": _rate(frame["distance"].to_numpy() > 0),
        "under": _rate(frame["distance"].to_numpy() < 0),
        "mae": float(frame["abs_age_error"].mean()) if n else math.nan,
        "gender_acc": _rate(frame["gender_correct"].to_numpy()),
        "gender_auc": auc,
    }


# metrics.json key names for a run's test split, and their rounding (agelab.metric_names: run folders
# already store these names).
RUN_METRICS: dict[str, tuple[str, int | None]] = {name: (m.run_key, m.places) for name, m in METRICS.items()}


def run_metrics(predictions: pd.DataFrame, scheme: BinScheme | str) -> dict[str, float]:
    """The :func:`headline` of a run's raw test predictions under the names its ``metrics.json`` keeps.

    ``predictions``: a predictions-contract table (:func:`agelab.evaluation.predictions.predictions_frame`)
    in ``scheme``, the run's bins. Returns ``test_bin_accuracy``, ``test_within_one_bin`` and
    ``test_gender_accuracy`` (fractions, 4 places), ``test_age_mae`` (years, 3 places) and ``n_test``.
    """
    numbers = headline(with_derived_columns(predictions, scheme))
    return {
        key: int(numbers[name]) if places is None else round(float(numbers[name]), places)
        for name, (key, places) in RUN_METRICS.items()
    }


def distance_distribution(frame: pd.DataFrame) -> pd.DataFrame:
    """Counts per signed bin distance (predicted minus true), with share and direction."""
    counts = frame["distance"].value_counts().sort_index()
    out = pd.DataFrame({"distance": counts.index.astype(int), "count": counts.to_numpy().astype(int)})
    out["share"] = out["count"] / max(len(frame), 1)
    out["direction"] = np.select([out["distance"] > 0, out["distance"] < 0], ["over", "under"], "exact")
    return out.reset_index(drop=True)


def abs_distance_distribution(frame: pd.DataFrame) -> pd.DataFrame:
    """Counts per absolute bin distance, with share and cumulative share (within-k accuracy)."""
    counts = frame["abs_distance"].value_counts().sort_index()
    out = pd.DataFrame({"abs_distance": counts.index.astype(int), "count": counts.to_numpy().astype(int)})
    out["share"] = out["count"] / max(len(frame), 1)
    out["cumulative"] = out["share"].cumsum()
    return out


def confusion(frame: pd.DataFrame, num_bins: int, normalize: bool = False) -> np.ndarray:
    """Confusion matrix, rows true bins and columns predicted bins; ``normalize`` divides each row
    by its total (rows with no images stay 0)."""
    return sk_confusion_matrix(
        frame["true_bin"],
        frame["pred_bin"],
        labels=list(range(num_bins)),
        normalize="true" if normalize else None,
    )


def per_bin_report(frame: pd.DataFrame, scheme: BinScheme) -> pd.DataFrame:
    """Precision, recall and support of each bin (scikit-learn; an empty bin scores 0)."""
    precision, recall, f1, support = precision_recall_fscore_support(
        frame["true_bin"], frame["pred_bin"], labels=list(range(scheme.num_bins)), zero_division=0
    )
    predicted = np.bincount(frame["pred_bin"].to_numpy(dtype=int), minlength=scheme.num_bins)
    return pd.DataFrame(
        {
            "bin": range(scheme.num_bins),
            "label": scheme.labels,
            "support": support.astype(int),
            "predicted": predicted[: scheme.num_bins].astype(int),
            "precision": precision,
            "recall": recall,
            "f1": f1,
        }
    )


def group_metrics(group: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """Count, exact / within-1 / gender accuracy with Wilson intervals, MAE with a bootstrap interval."""
    n = len(group)
    out: dict[str, float] = {"n": n}
    for name, mask in (
        ("exact", group["abs_distance"].to_numpy() == 0),
        ("within1", group["abs_distance"].to_numpy() <= 1),
        ("gender_acc", group["gender_correct"].to_numpy()),
    ):
        hits = int(np.count_nonzero(mask))
        out[name] = hits / n if n else math.nan
        out[f"{name}_lo"], out[f"{name}_hi"] = wilson_interval(hits, n)
    errors = group["abs_age_error"].to_numpy(dtype=float)
    out["mae"] = float(errors.mean()) if n else math.nan
    out["mae_lo"], out["mae_hi"] = bootstrap_mean_interval(errors, n_boot=n_boot, seed=seed)
    return out


def slice_metrics(
    frame: pd.DataFrame, dimensions: Iterable[str] | None = None, n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """The group metrics for every slice: overall, gender, ethnicity, age bin and their crossings.

    One row per (slice, group) with ``n`` and 95 % intervals; empty groups are left out.
    """
    rows = []
    for dimension in dimensions or SLICE_DIMENSIONS:
        if dimension not in SLICE_DIMENSIONS:
            raise ValueError(f"unknown slice {dimension!r}: choose from {', '.join(SLICE_DIMENSIONS)}")
        columns = SLICE_DIMENSIONS[dimension]
        if not columns:
            rows.append({"slice": dimension, "group": "all", **group_metrics(frame, n_boot, seed)})
            continue
        # Sort groups by the ordinal/numeric codes, not the labels, so "Child" comes before "Adult".
        order_cols = [
            {"gender_label": "gender", "ethnicity": "race", "true_label": "true_bin"}.get(c, c)
            for c in columns
        ]
        for _, group in frame.groupby(order_cols, sort=True):
            label = " / ".join(str(group[c].iloc[0]) for c in columns)
            rows.append({"slice": dimension, "group": label, **group_metrics(group, n_boot, seed)})
    return pd.DataFrame(rows)


def compare_headlines(headlines: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Headline metrics of several runs side by side (one column per run, one row per metric)."""
    metrics = ["n", "exact", "within1", "within2", "mean_abs_distance", "mae", "gender_acc", "gender_auc"]
    table = pd.DataFrame({name: [h.get(m) for m in metrics] for name, h in headlines.items()}, index=metrics)
    if len(headlines) == 2:
        a, b = table.columns
        table["difference"] = pd.to_numeric(table[b], errors="coerce") - pd.to_numeric(
            table[a], errors="coerce"
        )
    return table
