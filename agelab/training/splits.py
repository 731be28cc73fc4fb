"""A run's data: the dataset with marked images left out, subset, cropped as predict crops, split,
and the train split rebalanced."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from agelab.bins import BinScheme
from agelab.training.errors import RunError

SPLITS = ("train", "val", "test")


@dataclass
class RunData:
    """``frame`` every image the run uses; ``splits`` its train, val and test parts; ``train`` the
    train split after rebalancing, with ``weights`` when the rebalance is by class weights."""

    frame: pd.DataFrame
    splits: dict[str, pd.DataFrame]
    train: pd.DataFrame
    weights: np.ndarray | None
    n_excluded: int | None = None

    def source(self, split: str) -> pd.DataFrame:
        """The rows a split's dataset is made of (the rebalanced train split for ``train``)."""
        return self.train if split == "train" else self.splits[split]


def prepare_data(config: dict[str, Any], scheme: BinScheme, log: Callable[[str], None]) -> RunData:
    from agelab import pipeline
    from agelab.data import load_dataset
    from agelab.rebalance import rebalance

    c = config
    frame = load_dataset(c["data"])
    if frame.empty:
        raise RunError(f"no well-named UTKFace image in {c['data']}: point data= at the UTKFace images")
    n_excluded = None
    if c.get("exclude"):
        from agelab.marks import excluded_files

        # Faces marked "label looks wrong" on the Review page, left out of every split.
        dropped = frame["file"].isin(excluded_files(c["exclude"]))
        frame = frame[~dropped].reset_index(drop=True)
        n_excluded = int(dropped.sum())
        log(f"exclude {c['exclude']}: {n_excluded} marked images left out")
    frame = pipeline.stratified_subset(frame, c["max_images"], scheme, c["seed"])
    if c["crop"] == "aligned":
        from agelab.crop_cache import aligned_inputs

        # Train on what predict feeds the model: the detector's aligned crop of each image.
        frame = aligned_inputs(frame, c["image_size"], log)
    splits = {name: frame[frame["split"] == name].reset_index(drop=True) for name in SPLITS}
    for name, part in splits.items():
        if part.empty:
            advice = "raise max_images" if c["max_images"] else "the data folder needs more images"
            raise RunError(f"the {name} split is empty ({len(frame)} images in all): {advice}")
    train = rebalance(
        splits["train"],
        c["rebalance"],
        scheme,
        by_race=c["rebalance_by_race"],
        seed=c["seed"],
        power=c["rebalance_power"],
    )
    weights = train["weight"].to_numpy() if c["rebalance"] == "class_weights" else None
    log(
        f"data {c['data']}: {len(frame)} images; train {len(splits['train'])} "
        f"(after rebalance={c['rebalance']}: {len(train)}), val {len(splits['val'])}, "
        f"test {len(splits['test'])}; bins {scheme.spec} ({scheme.num_bins})"
    )
    return RunData(frame, splits, train, weights, n_excluded)
