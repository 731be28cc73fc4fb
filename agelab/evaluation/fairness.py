"""Gender accuracy for women and for men, and by age decade, each with its 95 % Wilson interval: the
rows the model card, ``bench/quality.py`` and ``evaluate`` report for every set."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from agelab.evaluation.intervals import wilson_interval


def _rate_row(correct: np.ndarray) -> dict[str, Any]:
    n, hits = int(len(correct)), int(np.sum(correct))
    rate = hits / n if n else float("nan")
    low, high = wilson_interval(hits, n)
    # Rounding can leave the bound a hair past a rate of 0 or 1.
    return {"n": n, "gender_acc": rate, "low": min(low, rate), "high": max(high, rate)}


def gender_fairness(predictions: pd.DataFrame) -> dict[str, Any]:
    """``{"women": row, "men": row, "gap_points": men - women, "decades": {"0-9": row, ...}}`` from a
    predictions-contract table (``gender``: 1 female; ``pred_gender``; ``age``)."""
    truth = predictions["gender"].to_numpy(dtype=int)
    correct = predictions["pred_gender"].to_numpy(dtype=int) == truth
    women, men = _rate_row(correct[truth == 1]), _rate_row(correct[truth == 0])
    decades = (predictions["age"].to_numpy(dtype=float) // 10).astype(int).clip(0, 9)
    by_decade = {
        (f"{10 * d}-{10 * d + 9}" if d < 9 else "90+"): _rate_row(correct[decades == d])
        for d in sorted(set(decades.tolist()))
    }
    return {
        "women": women,
        "men": men,
        "gap_points": round(100 * (men["gender_acc"] - women["gender_acc"]), 2),
        "decades": by_decade,
    }
