"""Age ranges as labels: a face labelled ``20-29`` (FairFace's way) is right anywhere in that range.

A run whose data holds any range trains on interval targets, in every split, so that one loss serves
train and validation:

- the bin head maximises the probability of the set of bins the range overlaps,
  ``-log(sum of p over those bins)``; for an exact age that set is one bin, and the loss is the usual
  cross-entropy;
- the years head is off by its distance to the range (zero inside it); for an exact age that is the
  absolute error.

``age_bin`` rows are packed ``[bin of the midpoint, m_1 .. m_K]`` (``m`` the 0/1 overlap mask) and
``age`` rows ``[low, high]``; gender is as in any run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from agelab.bins import BinScheme
from agelab.custom_objects import BinSetCrossentropy, IntervalAbsoluteError, bin_in_range, years_outside_range

import keras  # noqa: E402  isort: skip  (after agelab, which sets KERAS_HOME)


def has_ranges(frame: pd.DataFrame) -> bool:
    """Whether any row's age is a range rather than an exact age."""
    return "age_high" in frame and bool((frame["age_high"] > frame["age_low"]).any())


def overlap_mask(low: np.ndarray, high: np.ndarray, scheme: BinScheme) -> np.ndarray:
    """``(n, K)``: 1 where bin k holds an age in ``[low, high]``."""
    first = scheme.bin_of(np.asarray(low, dtype=float))
    last = scheme.bin_of(np.asarray(high, dtype=float))
    bins = np.arange(scheme.num_bins)
    return ((bins >= first[:, None]) & (bins <= last[:, None])).astype("float32")


def interval_labels(frame: pd.DataFrame, scheme: BinScheme) -> dict[str, np.ndarray]:
    low = frame["age_low"].to_numpy(dtype=float)
    high = frame["age_high"].to_numpy(dtype=float)
    midpoint_bin = scheme.bin_of((low + high) / 2).astype("float32")
    return {
        "age_bin": np.column_stack([midpoint_bin, overlap_mask(low, high, scheme)]).astype("float32"),
        "age": np.column_stack([low, high]).astype("float32"),
        "gender": frame["gender"].to_numpy().astype("float32")[:, None],
    }


def losses_and_metrics() -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """``compile()``'s ``loss`` and ``metrics`` for interval targets, under the usual metric names."""
    losses = {
        "age_bin": BinSetCrossentropy(name="bin_set_crossentropy"),
        "age": IntervalAbsoluteError(name="interval_absolute_error"),
        "gender": keras.losses.BinaryCrossentropy(),
    }
    metrics = {
        "age_bin": [keras.metrics.MeanMetricWrapper(bin_in_range, name="acc")],
        "age": [keras.metrics.MeanMetricWrapper(years_outside_range, name="mae")],
        "gender": [keras.metrics.BinaryAccuracy(name="acc")],
    }
    return losses, metrics
