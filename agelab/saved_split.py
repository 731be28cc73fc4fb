"""The dataset a run trains on: a UTKFace index (:mod:`agelab.data`) after its duplicate policy, with
its saved train/val/test split. The split is made once per folder and seed, stratified by age group and
gender, and keyed by content hash, so byte-identical copies share a split and images added later never
move the ones already placed.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from agelab import atomic
from agelab.bins import GROUPS10, BinScheme
from agelab.data import Index, dedupe, index_cache_dir, load_index, save_cache

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)


def stratum(frame: pd.DataFrame, scheme: BinScheme = GROUPS10) -> pd.Series:
    """The age bin x gender stratum of each row, used to stratify the split."""
    return pd.Series(
        scheme.bin_of(frame["age"].to_numpy()) * 2 + frame["gender"].to_numpy(), index=frame.index
    )


def make_split(
    frame: pd.DataFrame, seed: int = 0, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
) -> pd.Series:
    """A split per content hash, stratified by groups10 bin x gender.

    Splitting by hash keeps byte-identical copies together, so a test image never has a twin in
    training.
    """
    if abs(sum(fractions) - 1) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"split fractions {fractions} must be non-negative and sum to 1")
    units = frame.drop_duplicates("md5")
    strata = stratum(units)
    rng = np.random.default_rng(seed)
    assignment: dict[str, str] = {}
    for _, members in units.groupby(strata):
        md5s = members["md5"].to_numpy()[rng.permutation(len(members))]
        n_train = int(round(fractions[0] * len(md5s)))
        n_val = int(round(fractions[1] * len(md5s)))
        for i, md5 in enumerate(md5s):
            assignment[md5] = "train" if i < n_train else "val" if i < n_train + n_val else "test"
    return pd.Series(assignment, name="split").rename_axis("md5")


def load_split(index: Index, seed: int = 0) -> pd.Series:
    """The saved split of ``index`` (md5 -> split), made once and reused by every run.

    Images added later are placed by their hash, so existing assignments never move.
    """
    path = index_cache_dir(index.folder) / f"split-seed{seed}.parquet"
    saved = _read_split(path)
    if saved is not None:
        missing = index.frame.loc[~index.frame["md5"].isin(saved.index), "md5"].unique()
        extra = pd.Series({m: _split_by_hash(m, seed) for m in missing}, name="split").rename_axis("md5")
        split = pd.concat([saved, extra]) if len(missing) else saved
        emptied = _emptied_splits(split, index.frame, seed)
        if emptied:
            print(
                f"agelab: the saved split {path} leaves {' and '.join(emptied)} empty though this folder "
                "fills them; made again",
                file=sys.stderr,
            )
            split = make_split(index.frame, seed)
        elif not len(missing):
            return saved
    else:
        split = make_split(index.frame, seed)
    save_cache(path, lambda p: atomic.write_parquet(p, split.reset_index()))
    return split


def _emptied_splits(split: pd.Series, frame: pd.DataFrame, seed: int) -> list[str]:
    """The splits that ``split`` leaves without an image of ``frame`` though a fresh split would fill
    them: a saved file that puts every image in train was trusted, and the run had no test set."""
    used = set(split[split.index.isin(frame["md5"])])
    if used >= set(SPLITS):
        return []
    fresh = set(make_split(frame, seed))
    return [name for name in SPLITS if name in fresh and name not in used]


def _read_split(path: Path) -> pd.Series | None:
    """The saved split, or None when it is missing or unreadable (then it is made again: the split is
    deterministic, so a damaged file heals to the same assignment)."""
    try:
        saved = pd.read_parquet(path).set_index("md5")["split"]
    except Exception:  # noqa: BLE001  missing, or garbage in a cache file: remade, whatever pyarrow raised
        return None
    return saved if saved.isin(SPLITS).all() else None


def _split_by_hash(md5: str, seed: int) -> str:
    value = int(hashlib.sha1(f"{seed}:{md5}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "train" if value < DEFAULT_FRACTIONS[0] else "val" if value < 1 - DEFAULT_FRACTIONS[2] else "test"


def load_dataset(
    folder: str | Path | None = None, dedupe_policy: str = "drop_conflicts", seed: int = 0
) -> pd.DataFrame:
    """The index after the duplicate policy, with a ``split`` column (train / val / test)."""
    index = load_index(folder)
    split = load_split(index, seed)
    frame = dedupe(index.frame, dedupe_policy).copy()
    frame["split"] = frame["md5"].map(split)
    return frame.reset_index(drop=True)
