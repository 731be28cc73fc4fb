"""Rebalancing strategies for the skewed UTKFace age distribution.

Each strategy works per age bin, or per age bin x ethnicity as the seed projects did.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from agelab.bins import BinScheme

STRATEGIES = ("none", "undersample", "oversample", "class_weights")


def group_keys(frame: pd.DataFrame, scheme: BinScheme, by_race: bool = False) -> pd.Series:
    """The rebalancing group of each row: its age bin, or its age bin x ethnicity."""
    bins = scheme.bin_of(frame["age"].to_numpy())
    keys = bins * 10 + frame["race"].to_numpy() if by_race else bins
    return pd.Series(keys, index=frame.index, name="group")


def default_target(frame: pd.DataFrame, scheme: BinScheme, by_race: bool = False) -> int:
    """The median group size: a cap or floor that neither starves nor floods any group (1 for no rows)."""
    if frame.empty:
        return 1
    return int(group_keys(frame, scheme, by_race).value_counts().median())


def rebalance(
    frame: pd.DataFrame,
    strategy: str,
    scheme: BinScheme,
    target: int | None = None,
    by_race: bool = False,
    seed: int = 0,
    power: float = 1.0,
) -> pd.DataFrame:
    """Return ``frame`` rebalanced, with a ``weight`` column (1.0 unless ``class_weights``).

    - ``undersample``: at most ``target`` rows per group (default: the median group size);
    - ``oversample``: at least ``target`` rows per group, drawn with replacement;
    - ``class_weights``: every row kept, weighted by ``(n / (groups * group size)) ** power``, scaled
      to a mean of 1: ``power=1`` gives every group the same total weight, a smaller power moves part
      of the way, so that a small cell (Black babies: 29 faces) does not weigh 20 times a face;
    - ``none``: unchanged.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"rebalance={strategy!r}: allowed values are {', '.join(STRATEGIES)}")
    if target is not None and target < 1:
        raise ValueError(f"rebalance target={target}: must be a positive number of images per group")
    if not 0 <= power <= 1:
        raise ValueError(f"rebalance power={power}: must be between 0 (no change) and 1 (fully balanced)")
    keys = group_keys(frame, scheme, by_race)
    out = frame.assign(weight=1.0)
    if strategy == "none" or frame.empty:
        return out
    if strategy == "class_weights":
        sizes = keys.map(keys.value_counts())
        weight = (len(frame) / (keys.nunique() * sizes.to_numpy())) ** power
        out["weight"] = weight / weight.mean()
        return out
    target = target or default_target(frame, scheme, by_race)
    rng = np.random.default_rng(seed)
    parts = []
    for _, members in out.groupby(keys, sort=True):
        n = len(members)
        if strategy == "undersample" and n > target:
            members = members.iloc[np.sort(rng.choice(n, target, replace=False))]
        elif strategy == "oversample" and n < target:
            extra = members.iloc[rng.choice(n, target - n, replace=True)]
            members = pd.concat([members, extra])
        parts.append(members)
    return pd.concat(parts).reset_index(drop=True)
