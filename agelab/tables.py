"""Tables as a reader sees them: named columns, one percent format, intervals as ranges.

The metric tables of :mod:`agelab.evaluation.metrics` keep raw fractions and column names such as
``exact_lo`` (they are exported and tested as numbers); these functions turn them into what the
pages show. Percentages are numbers in 0-100 with one decimal, so the page formats them all alike.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

PERCENT_METRICS = {"exact": "exact", "within1": "within 1", "gender_acc": "gender acc"}
COMPARE_LABELS = {
    "n": "images",
    "exact": "exact bin",
    "within1": "within 1 bin",
    "within2": "within 2 bins",
    "mean_abs_distance": "mean bins off",
    "mae": "age MAE (years)",
    "gender_acc": "gender accuracy",
    "gender_auc": "gender ROC AUC",
}
_PERCENT_ROWS = {"exact", "within1", "within2", "gender_acc"}


def _pct(value: Any) -> float:
    return math.nan if value is None or pd.isna(value) else round(float(value) * 100, 1)


def _range(lo: Any, hi: Any, scale: float = 100, digits: int = 1) -> str:
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return ""
    return f"{float(lo) * scale:.{digits}f}-{float(hi) * scale:.{digits}f}"


def slice_table(slices: pd.DataFrame) -> pd.DataFrame:
    """:func:`agelab.evaluation.metrics.slice_metrics` with readable headers: each metric as a percentage
    (one decimal, ``exact %``) followed by its 95 % interval as ``lo-hi`` (``exact CI``); the age MAE
    in years. Short headers, so the table fits the page without a sideways scroll."""
    out = pd.DataFrame(
        {"slice": slices["slice"], "group": slices["group"], "images": slices["n"].astype(int)}
    )
    for key, name in PERCENT_METRICS.items():
        out[f"{name} %"] = slices[key].map(_pct)
        out[f"{name} CI"] = [_range(lo, hi) for lo, hi in zip(slices[f"{key}_lo"], slices[f"{key}_hi"])]
    out["MAE (y)"] = slices["mae"].astype(float).round(2)
    out["MAE CI"] = [_range(lo, hi, 1, 2) for lo, hi in zip(slices["mae_lo"], slices["mae_hi"])]
    return out.reset_index(drop=True)


def compare_table(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`agelab.evaluation.metrics.compare_headlines` as text: percentages for rates (differences in
    percentage points), counts with separators, one row per metric under a readable name."""
    rows = {}
    for metric, values in table.iterrows():
        cells = {}
        for column, value in values.items():
            if value is None or pd.isna(value):
                cells[column] = "n/a"
            elif metric in _PERCENT_ROWS:
                cells[column] = f"{float(value) * 100:+.1f} pp" if column == "difference" else f"{value:.1%}"
            elif metric == "n":
                cells[column] = f"{int(value):+,}" if column == "difference" else f"{int(value):,}"
            else:
                cells[column] = f"{float(value):+.3f}" if column == "difference" else f"{float(value):.3f}"
        rows[COMPARE_LABELS.get(str(metric), str(metric))] = cells
    return pd.DataFrame.from_dict(rows, orient="index")


def per_bin_table(report: pd.DataFrame) -> pd.DataFrame:
    """:func:`agelab.evaluation.metrics.per_bin_report` with percentages and readable headers."""
    return pd.DataFrame(
        {
            "age bin": report["label"],
            "images": report["support"].astype(int),
            "predicted": report["predicted"].astype(int),
            "precision %": report["precision"].map(_pct),
            "recall %": report["recall"].map(_pct),
            "F1 %": report["f1"].map(_pct),
        }
    )


def duplicates_table(duplicates: pd.DataFrame) -> pd.DataFrame:
    """:attr:`agelab.data.Index.duplicate_groups` in words: gender and ethnicity by name, a
    malformed name's reason (blank for a well-named file), conflicting as yes/no; no paths."""
    from agelab.data import GENDERS, RACES

    def name(codes: pd.Series, names: dict[int, str]) -> pd.Series:
        return codes.map(lambda c: "" if pd.isna(c) else names.get(int(c), str(c)))

    return pd.DataFrame(
        {
            "group": duplicates["dup_group"].astype(int),
            "file": duplicates["file"],
            "age": duplicates["age"].map(lambda a: "" if pd.isna(a) else str(int(a))),
            "gender": name(duplicates["gender"], GENDERS),
            "ethnicity": name(duplicates["race"], RACES),
            "labels disagree": duplicates["dup_conflict"]
            .fillna(False)
            .astype(bool)
            .map({True: "yes", False: "no"}),
            "malformed name": duplicates["reason"].fillna("").astype(str),
        }
    ).reset_index(drop=True)
