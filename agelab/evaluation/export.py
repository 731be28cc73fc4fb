"""A predictions table as CSV, with the labels a reader needs."""

from __future__ import annotations

import io

import pandas as pd

EXPORT_COLUMNS = [
    "path",
    "age",
    "gender",
    "race",
    "ethnicity",
    "true_bin",
    "true_label",
    "pred_bin",
    "pred_label",
    "confidence",
    "distance",
    "pred_age",
    "age_error",
    "pred_gender",
    "prob_female",
]


def export_csv(frame: pd.DataFrame) -> bytes:
    """The rows as CSV (UTF-8), with the labels a reader needs."""
    columns = [c for c in EXPORT_COLUMNS if c in frame.columns]
    buffer = io.StringIO()
    frame[columns].to_csv(buffer, index=False)
    return buffer.getvalue().encode("utf-8")
