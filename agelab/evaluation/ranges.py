"""Scoring faces whose label is an age range: the truth is the point of the range nearest to the
prediction, so the age error is the distance to the range (zero inside it) and a predicted bin that
the range overlaps counts as exact."""

from __future__ import annotations

import numpy as np
import pandas as pd

from agelab.bins import BinScheme


def score_against_ranges(predictions: pd.DataFrame, labels: pd.DataFrame, scheme: BinScheme) -> pd.DataFrame:
    """``predictions`` (the predictions contract, in ``scheme``) with ``age`` and ``true_bin`` taken from
    ``labels``' ``age_low``/``age_high`` (matched by ``path``); rows without a range are unchanged."""
    ranges = labels.set_index("path")[["age_low", "age_high"]]
    ranges = ranges[~ranges.index.duplicated()]
    matched = ranges.reindex(predictions["path"].astype(str))
    low = matched["age_low"].to_numpy(dtype=float)
    high = matched["age_high"].to_numpy(dtype=float)
    ranged = np.isfinite(low) & np.isfinite(high) & (high > low)
    if not ranged.any():
        return predictions
    out = predictions.copy()
    pred_age = out["pred_age"].to_numpy(dtype=float)
    nearest = np.clip(pred_age, low, high)
    out["age"] = np.where(ranged, nearest, out["age"].to_numpy(dtype=float))
    first, last = scheme.bin_of(np.where(ranged, low, 0)), scheme.bin_of(np.where(ranged, high, 0))
    predicted = out["pred_bin"].to_numpy()
    inside = (predicted >= first) & (predicted <= last)
    truth = np.where(inside, predicted, scheme.bin_of(out["age"].to_numpy(dtype=float)))
    out["true_bin"] = np.where(ranged, truth, out["true_bin"].to_numpy())
    return out
