"""Fast mode's one pass of the frozen backbone over every image, cached on disk per backbone, size
and image set."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from agelab.training.callbacks import FeatureProgress, StopOnRequest
from agelab.training.errors import RunStopped
from agelab.training.splits import SPLITS, RunData
from agelab.training.stop import StopRequest

# Images per batch of the extraction (pipeline.cached_features' default): progress counts in these.
EXTRACT_BATCH = 128


@dataclass
class Features:
    """The backbone's features of the train and val splits' rows, in order (train: the rebalanced
    train split). The test split is scored by the saved model, as ``evaluate`` scores it."""

    train: np.ndarray
    val: np.ndarray
    from_cache: bool
    seconds: float


def extract_features(
    feature_model: Any,
    data: RunData,
    config: dict[str, Any],
    run_dir: Path,
    stopper: StopRequest,
    log: Callable[[str], None],
) -> Features:
    """Raises :class:`RunStopped` when a stop request ended the extraction."""
    from agelab import pipeline

    c = config
    if c["augment"]:
        log("fast mode: the cached features are unaugmented; augment applies to fine-tuning only")
    # Every split, test too: the cache is keyed by the image set (the one earlier runs wrote).
    everything = pd.concat([data.source(split) for split in SPLITS])
    key = {
        "model": c["model"],
        "alpha": f"a{c['alpha']:g}",
        "size": c["image_size"],
        "weights": c["weights"],
    }
    steps = -(-everything["path"].nunique() // EXTRACT_BATCH)
    start = time.time()
    features, from_cache = pipeline.cached_features(
        feature_model,
        everything,
        c["image_size"],
        key,
        batch_size=EXTRACT_BATCH,
        callbacks=[StopOnRequest(stopper), FeatureProgress(run_dir, steps)],
    )
    seconds = time.time() - start
    log(
        f"features {features.shape} {'read from the cache' if from_cache else 'computed and cached'} "
        f"in {seconds:.1f}s"
    )
    if stopper.requested:
        raise RunStopped()
    n_train, n_val = len(data.train), len(data.splits["val"])
    return Features(
        features[:n_train],
        features[n_train : n_train + n_val],
        from_cache,
        seconds,
    )
