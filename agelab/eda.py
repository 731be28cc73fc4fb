"""Summaries behind the Dataset page: distributions, crossings, their imbalance, and a rebalancing's
effect."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from agelab.bins import BinScheme
from agelab.data import GENDERS, RACES
from agelab.rebalance import rebalance


def labelled(frame: pd.DataFrame, scheme: BinScheme) -> pd.DataFrame:
    """Add readable ``bin``, ``bin_label``, ``gender_name`` and ``race_name`` columns."""
    bins = scheme.bin_of(frame["age"].to_numpy())
    labels = np.array(scheme.labels)
    return frame.assign(
        bin=bins,
        bin_label=pd.Categorical(labels[bins], categories=scheme.labels, ordered=True),
        gender_name=frame["gender"].map(GENDERS),
        race_name=pd.Categorical(frame["race"].map(RACES), categories=list(RACES.values())),
    )


def imbalance_ratio(counts: pd.Series | np.ndarray) -> float:
    """Largest class over smallest non-empty class (inf when a class is empty)."""
    counts = np.asarray(counts, dtype=float).ravel()
    if counts.size == 0:
        return float("nan")
    if counts.min() == 0:
        return float("inf")
    return float(counts.max() / counts.min())


def crosstab(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """Counts of age bin (rows) x ``column`` (``gender_name`` or ``race_name``), empty cells kept."""
    return pd.crosstab(frame["bin_label"], frame[column], dropna=False)


def sample_faces(
    frame: pd.DataFrame,
    bins: list[int] | None = None,
    genders: list[int] | None = None,
    races: list[int] | None = None,
    n: int = 24,
    seed: int = 0,
) -> pd.DataFrame:
    """A reproducible random sample of rows matching the filters (``None`` means any)."""
    mask = np.ones(len(frame), dtype=bool)
    for column, wanted in (("bin", bins), ("gender", genders), ("race", races)):
        if wanted:
            mask &= frame[column].isin(wanted).to_numpy()
    matching = frame[mask]
    return matching.sample(n=min(n, len(matching)), random_state=seed) if len(matching) else matching


def caption(row: pd.Series) -> str:
    return f"{row['age']:g} y, {GENDERS[row['gender']]}, {RACES[row['race']]}"


def source_mix(frame: pd.DataFrame) -> pd.DataFrame:
    """Images per age bin and source, with each source's share of its bin (``labelled`` rows)."""
    mix = frame.groupby(["bin_label", "source"], observed=True).size().reset_index(name="images")
    mix["share"] = mix["images"] / mix.groupby("bin_label", observed=True)["images"].transform("sum")
    return mix


@dataclass(frozen=True)
class RebalancePreview:
    """What a rebalancing does to a dataset: ``table`` has one row per age bin (and ethnicity, when
    balanced by it) and ``when`` (``before``, ``after``) with its ``images`` (after: the summed weights,
    so class weights count as the faces they weigh); ``title`` says it in one line."""

    table: pd.DataFrame
    title: str


def rebalance_preview(
    frame: pd.DataFrame,
    scheme: BinScheme,
    strategy: str,
    target: int | None = None,
    by_race: bool = False,
    power: float = 1.0,
) -> RebalancePreview:
    """``frame`` (:func:`labelled` rows) before and after :func:`agelab.rebalance.rebalance`."""
    balanced = labelled(rebalance(frame, strategy, scheme, target, by_race, power=power), scheme)
    keys = ["bin_label", *(["race_name"] if by_race else [])]
    before = frame.groupby(keys, observed=False).size().rename("before")
    after = balanced.groupby(keys, observed=False)["weight"].sum().rename("after")
    table = (
        pd.concat([before, after], axis=1)
        .reset_index()
        .melt(id_vars=keys, var_name="when", value_name="images")
    )
    weights = balanced["weight"]
    title = (
        f"{strategy}: {len(balanced):,} images kept of {len(frame):,} (weighted total {weights.sum():,.0f})"
    )
    if strategy == "class_weights" and len(balanced):
        title += f"; a face weighs {weights.min():.2f}x to {weights.max():.2f}x the mean"
    return RebalancePreview(table, title)
