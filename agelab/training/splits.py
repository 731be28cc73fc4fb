"""A run's data: the dataset with marked images left out, subset, cropped as predict crops, split,
and the train split rebalanced."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from agelab.bins import BinScheme
from agelab.model_inputs import uses_aligned_crops
from agelab.saved_split import SPLITS
from agelab.training.errors import RunError


@dataclass
class RunData:
    """``frame`` every image the run uses; ``splits`` its train, val and test parts; ``train`` the
    train split after rebalancing, with ``weights`` when the rebalance is by class weights."""

    frame: pd.DataFrame
    splits: dict[str, pd.DataFrame]
    train: pd.DataFrame
    weights: np.ndarray | None
    n_excluded: int | None = None
    # Marked test images: kept in the test split (it never changes), scored with and without them.
    disputed: frozenset[str] = frozenset()
    # Some ages are ranges (agelab.training.intervals): every split trains on interval targets.
    ranges: bool = False

    def source(self, split: str) -> pd.DataFrame:
        """The rows a split's dataset is made of (the rebalanced train split for ``train``)."""
        return self.train if split == "train" else self.splits[split]


def prepare_data(config: dict[str, Any], scheme: BinScheme, log: Callable[[str], None]) -> RunData:
    from agelab import pipeline
    from agelab.data_sources import SourceError, load_sources, parse_sources
    from agelab.labels_csv import LabelsError
    from agelab.rebalance import rebalance

    c = config
    try:
        frame, reports = load_sources(parse_sources(c["data"], c.get("source_weights", "")))
    except (SourceError, LabelsError) as err:
        raise RunError(str(err)) from None
    if frame.empty:
        left_out = pd.concat([report.index.malformed for report in reports], ignore_index=True)
        # The first reason a file was left out is usually the one to fix (a gender spelled "woman?").
        why = (
            f" ({len(left_out)} file(s) left out; the first: {left_out['file'].iloc[0]}: "
            f"{left_out['reason'].iloc[0]})"
            if len(left_out)
            else ""
        )
        raise RunError(
            f"no usable labelled image in {c['data']}{why}: point data= at UTKFace images or at a folder "
            "with a labels.csv (file,age_low,age_high,gender)"
        )
    n_excluded = None
    disputed: frozenset[str] = frozenset()
    if c.get("exclude"):
        from agelab.marks import excluded_files

        # Faces marked "label looks wrong" on the Review page leave training and validation. The test
        # split never changes, so that every run is scored on the same images: a marked test image
        # stays, as disputed, and the run is scored with and without the disputed ones.
        marked = frame["file"].isin(excluded_files(c["exclude"]))
        in_test = frame["split"] == "test"
        disputed = frozenset(frame.loc[marked & in_test, "path"].astype(str))
        frame = frame[~(marked & ~in_test)].reset_index(drop=True)
        n_excluded = int((marked & ~in_test).sum())
        log(
            f"exclude {c['exclude']}: {n_excluded} marked images left out of training and validation; "
            f"{len(disputed)} marked test images kept as disputed"
        )
    frame = pipeline.stratified_subset(frame, c["max_images"], scheme, c["seed"])
    if uses_aligned_crops(c):
        from agelab.crop_cache import aligned_inputs

        # Train on what predict feeds the model: the detector's aligned crop of each image.
        frame = aligned_inputs(frame, c["image_size"], log)
    else:
        frame = pipeline.decodable(frame, log)
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
    if (train["source_weight"] != 1).any():
        # A source's weight scales each of its faces in the loss, on top of any class weight.
        weights = (weights if weights is not None else 1.0) * train["source_weight"].to_numpy()
    sources = frame.groupby("source", sort=False)["split"].value_counts().unstack(fill_value=0)
    if len(sources) > 1:
        log(
            "sources: "
            + "; ".join(
                f"{name} train {row.get('train', 0)}, val {row.get('val', 0)}, test {row.get('test', 0)}"
                for name, row in sources.iterrows()
            )
        )
    log(
        f"data {c['data']}: {len(frame)} images; train {len(splits['train'])} "
        f"(after rebalance={c['rebalance']}: {len(train)}), val {len(splits['val'])}, "
        f"test {len(splits['test'])}; bins {scheme.spec} ({scheme.num_bins})"
    )
    from agelab.training.intervals import has_ranges

    ranges = has_ranges(frame)
    if ranges:
        clashing = [key for key in ("teacher", "mixup", "soft_bins") if c.get(key)]
        if clashing:
            raise RunError(
                f"{', '.join(clashing)} cannot train on age ranges (labels.csv rows with age_low < age_high); "
                f"leave {' and '.join(clashing)} at the default, or give exact ages"
            )
        log(
            f"age ranges: {int((frame['age_high'] > frame['age_low']).sum())} faces train on interval targets"
        )
    return RunData(frame, splits, train, weights, n_excluded, disputed, ranges)
