"""Evaluation: how far off a model is, in ordinal bins, overall and per slice, and which faces.

Everything here works on a predictions table (the predictions contract in docs/architecture.md):
``path, age, gender, race, true_bin, pred_bin, bin_prob_0..K-1, pred_age, pred_gender, prob_female``.
:func:`prepare` adds the derived columns that the metrics, the gallery and the Review page share.
The ``evaluate`` verb (:func:`cli`) makes such a table for any saved model and folder of images.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import math
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

from agelab import atomic
from agelab.bins import BinScheme, get_scheme
from agelab.data import GENDERS, RACES

Z_95 = 1.959963984540054
PREDICTION_COLUMNS = [
    "path",
    "age",
    "gender",
    "race",
    "true_bin",
    "pred_bin",
    "pred_age",
    "pred_gender",
    "prob_female",
]
SLICE_DIMENSIONS: dict[str, tuple[str, ...]] = {
    "all": (),
    "gender": ("gender_label",),
    "ethnicity": ("ethnicity",),
    "age bin": ("true_label",),
    "gender x ethnicity": ("gender_label", "ethnicity"),
    "gender x age bin": ("gender_label", "true_label"),
    "ethnicity x age bin": ("ethnicity", "true_label"),
}
SORTS = ("most wrong", "confidence", "age error", "random")
DIRECTIONS = ("any", "over", "under")


# --- the predictions table ---------------------------------------------------------------------


def bin_prob_columns(frame: pd.DataFrame) -> list[str]:
    """The ``bin_prob_<k>`` columns in bin order."""
    cols = [c for c in frame.columns if c.startswith("bin_prob_")]
    return sorted(cols, key=lambda c: int(c.rsplit("_", 1)[1]))


def check_predictions(frame: pd.DataFrame, where: str = "predictions") -> None:
    """Raise a ValueError naming every contract column that ``frame`` lacks."""
    missing = [c for c in PREDICTION_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{where} lacks column(s) {', '.join(missing)} of the predictions contract")


def load_predictions(path: str | Path) -> pd.DataFrame:
    """Read a ``predictions.parquet`` and check it against the contract."""
    frame = pd.read_parquet(path)
    check_predictions(frame, str(path))
    return frame


def rebin(predictions: pd.DataFrame, scheme: BinScheme) -> pd.DataFrame:
    """The predictions under another scheme: true bins from ``age``, predicted bins from ``pred_age``.

    The bin probabilities belong to the model's own scheme, so they are dropped.
    """
    out = predictions.drop(columns=bin_prob_columns(predictions))
    out["true_bin"] = scheme.bin_of(out["age"].to_numpy())
    out["pred_bin"] = scheme.bin_of(out["pred_age"].to_numpy())
    return out


def prepare(
    predictions: pd.DataFrame, native: BinScheme | str, scheme: BinScheme | str | None = None
) -> pd.DataFrame:
    """The predictions with the columns every view needs.

    ``native`` is the scheme the bins were predicted in; when ``scheme`` differs, the table is
    rebinned (:func:`rebin`). Added: ``distance`` (predicted minus true bin), ``abs_distance``,
    ``direction`` (over / under / exact), ``confidence`` (probability of the predicted bin, NaN
    after rebinning), ``age_error`` (predicted minus true age), ``abs_age_error``,
    ``gender_correct``, and display labels ``true_label``, ``pred_label``, ``gender_label``,
    ``ethnicity``, ``pred_gender_label``.
    """
    check_predictions(predictions)
    native = get_scheme(native)
    scheme = native if scheme is None else get_scheme(scheme)
    frame = predictions.copy() if scheme.spec == native.spec else rebin(predictions, scheme)
    frame = frame.reset_index(drop=True)
    frame["true_bin"] = frame["true_bin"].astype(int)
    frame["pred_bin"] = frame["pred_bin"].astype(int)
    distance = BinScheme.distance(frame["true_bin"].to_numpy(), frame["pred_bin"].to_numpy())
    frame["distance"] = distance
    frame["abs_distance"] = np.abs(distance)
    frame["direction"] = np.select([distance > 0, distance < 0], ["over", "under"], "exact")
    probs = bin_prob_columns(frame)
    if probs:
        matrix = frame[probs].to_numpy(dtype=float)
        frame["confidence"] = matrix[np.arange(len(frame)), np.clip(frame["pred_bin"], 0, len(probs) - 1)]
    else:
        frame["confidence"] = np.nan
    frame["age_error"] = frame["pred_age"].astype(float) - frame["age"].astype(float)
    frame["abs_age_error"] = frame["age_error"].abs()
    frame["gender_correct"] = frame["pred_gender"].astype(int) == frame["gender"].astype(int)
    labels = np.array(scheme.labels)
    frame["true_label"] = labels[frame["true_bin"].to_numpy()]
    frame["pred_label"] = labels[frame["pred_bin"].to_numpy()]
    frame["gender_label"] = frame["gender"].map(GENDERS)
    frame["pred_gender_label"] = frame["pred_gender"].map(GENDERS)
    frame["ethnicity"] = frame["race"].map(RACES)
    frame.attrs["scheme"] = scheme.spec
    return frame


# --- intervals ---------------------------------------------------------------------------------


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a proportion; (nan, nan) when ``n`` is 0."""
    if n <= 0:
        return (math.nan, math.nan)
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, center - half), min(1.0, center + half))


def bootstrap_mean_interval(
    values: np.ndarray | Sequence[float], n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of a mean (used for MAE), seeded so it is reproducible."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    # Resample in chunks so a 20k-image folder does not allocate n_boot x n indices at once.
    chunk = max(1, 2_000_000 // n)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        means[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return (float(lo), float(hi))


# --- metrics -----------------------------------------------------------------------------------


def _rate(mask: pd.Series | np.ndarray) -> float:
    mask = np.asarray(mask)
    return float(mask.mean()) if len(mask) else math.nan


def headline(frame: pd.DataFrame) -> dict[str, Any]:
    """The headline numbers of a prepared table: bin accuracy (exact, within 1 and 2), age MAE,
    gender accuracy and ROC AUC, and the share of over- and under-estimates."""
    n = len(frame)
    abs_distance = frame["abs_distance"].to_numpy()
    gender = frame["gender"].to_numpy().astype(int)
    auc = None
    if n and len(np.unique(gender)) == 2:
        auc = float(roc_auc_score(gender, frame["prob_female"].to_numpy(dtype=float)))
    return {
        "n": int(n),
        "exact": _rate(abs_distance == 0),
        "within1": _rate(abs_distance <= 1),
        "within2": _rate(abs_distance <= 2),
        "mean_abs_distance": float(abs_distance.mean()) if n else math.nan,
        "over": _rate(frame["distance"].to_numpy() > 0),
        "under": _rate(frame["distance"].to_numpy() < 0),
        "mae": float(frame["abs_age_error"].mean()) if n else math.nan,
        "gender_acc": _rate(frame["gender_correct"].to_numpy()),
        "gender_auc": auc,
    }


def distance_distribution(frame: pd.DataFrame) -> pd.DataFrame:
    """Counts per signed bin distance (predicted minus true), with share and direction."""
    counts = frame["distance"].value_counts().sort_index()
    out = pd.DataFrame({"distance": counts.index.astype(int), "count": counts.to_numpy().astype(int)})
    out["share"] = out["count"] / max(len(frame), 1)
    out["direction"] = np.select([out["distance"] > 0, out["distance"] < 0], ["over", "under"], "exact")
    return out.reset_index(drop=True)


def abs_distance_distribution(frame: pd.DataFrame) -> pd.DataFrame:
    """Counts per absolute bin distance, with share and cumulative share (within-k accuracy)."""
    counts = frame["abs_distance"].value_counts().sort_index()
    out = pd.DataFrame({"abs_distance": counts.index.astype(int), "count": counts.to_numpy().astype(int)})
    out["share"] = out["count"] / max(len(frame), 1)
    out["cumulative"] = out["share"].cumsum()
    return out


def confusion(frame: pd.DataFrame, num_bins: int, normalize: bool = False) -> np.ndarray:
    """Confusion matrix, rows true bins and columns predicted bins; ``normalize`` divides each row
    by its total (rows with no images stay 0)."""
    return sk_confusion_matrix(
        frame["true_bin"],
        frame["pred_bin"],
        labels=list(range(num_bins)),
        normalize="true" if normalize else None,
    )


def per_bin_report(frame: pd.DataFrame, scheme: BinScheme) -> pd.DataFrame:
    """Precision, recall and support of each bin (scikit-learn; an empty bin scores 0)."""
    precision, recall, f1, support = precision_recall_fscore_support(
        frame["true_bin"], frame["pred_bin"], labels=list(range(scheme.num_bins)), zero_division=0
    )
    predicted = np.bincount(frame["pred_bin"].to_numpy(dtype=int), minlength=scheme.num_bins)
    return pd.DataFrame(
        {
            "bin": range(scheme.num_bins),
            "label": scheme.labels,
            "support": support.astype(int),
            "predicted": predicted[: scheme.num_bins].astype(int),
            "precision": precision,
            "recall": recall,
            "f1": f1,
        }
    )


def group_metrics(group: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """Count, exact / within-1 / gender accuracy with Wilson intervals, MAE with a bootstrap interval."""
    n = len(group)
    out: dict[str, float] = {"n": n}
    for name, mask in (
        ("exact", group["abs_distance"].to_numpy() == 0),
        ("within1", group["abs_distance"].to_numpy() <= 1),
        ("gender_acc", group["gender_correct"].to_numpy()),
    ):
        hits = int(np.count_nonzero(mask))
        out[name] = hits / n if n else math.nan
        out[f"{name}_lo"], out[f"{name}_hi"] = wilson_interval(hits, n)
    errors = group["abs_age_error"].to_numpy(dtype=float)
    out["mae"] = float(errors.mean()) if n else math.nan
    out["mae_lo"], out["mae_hi"] = bootstrap_mean_interval(errors, n_boot=n_boot, seed=seed)
    return out


def slice_metrics(
    frame: pd.DataFrame, dimensions: Iterable[str] | None = None, n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """The group metrics for every slice: overall, gender, ethnicity, age bin and their crossings.

    One row per (slice, group) with ``n`` and 95 % intervals; empty groups are left out.
    """
    rows = []
    for dimension in dimensions or SLICE_DIMENSIONS:
        if dimension not in SLICE_DIMENSIONS:
            raise ValueError(f"unknown slice {dimension!r}: choose from {', '.join(SLICE_DIMENSIONS)}")
        columns = SLICE_DIMENSIONS[dimension]
        if not columns:
            rows.append({"slice": dimension, "group": "all", **group_metrics(frame, n_boot, seed)})
            continue
        # Sort groups by the ordinal/numeric codes, not the labels, so "Child" comes before "Adult".
        order_cols = [
            {"gender_label": "gender", "ethnicity": "race", "true_label": "true_bin"}[c] for c in columns
        ]
        for _, group in frame.groupby(order_cols, sort=True):
            label = " / ".join(str(group[c].iloc[0]) for c in columns)
            rows.append({"slice": dimension, "group": label, **group_metrics(group, n_boot, seed)})
    return pd.DataFrame(rows)


def compare_headlines(headlines: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Headline metrics of several runs side by side (one column per run, one row per metric)."""
    metrics = ["n", "exact", "within1", "within2", "mean_abs_distance", "mae", "gender_acc", "gender_auc"]
    table = pd.DataFrame({name: [h.get(m) for m in metrics] for name, h in headlines.items()}, index=metrics)
    if len(headlines) == 2:
        a, b = table.columns
        table["difference"] = pd.to_numeric(table[b], errors="coerce") - pd.to_numeric(
            table[a], errors="coerce"
        )
    return table


# --- the gallery -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GalleryQuery:
    """What the gallery shows: filters, then an order.

    ``distance`` with ``at_least`` False keeps images exactly that many bins off, with True at
    least that many. Empty tuples mean "any".
    """

    distance: int | None = None
    at_least: bool = False
    true_bins: tuple[int, ...] = ()
    pred_bins: tuple[int, ...] = ()
    genders: tuple[int, ...] = ()
    races: tuple[int, ...] = ()
    direction: str = "any"
    sort: str = "most wrong"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction {self.direction!r}: choose from {', '.join(DIRECTIONS)}")
        if self.sort not in SORTS:
            raise ValueError(f"sort {self.sort!r}: choose from {', '.join(SORTS)}")
        if self.distance is not None and self.distance < 0:
            raise ValueError(f"distance {self.distance}: give a number of bins >= 0 and a direction")


def filter_predictions(frame: pd.DataFrame, query: GalleryQuery) -> pd.DataFrame:
    """The rows of a prepared table that pass the query's filters (order unchanged)."""
    keep = np.ones(len(frame), dtype=bool)
    if query.distance is not None:
        abs_distance = frame["abs_distance"].to_numpy()
        keep &= abs_distance >= query.distance if query.at_least else abs_distance == query.distance
    for column, allowed in (
        ("true_bin", query.true_bins),
        ("pred_bin", query.pred_bins),
        ("gender", query.genders),
        ("race", query.races),
    ):
        if allowed:
            keep &= frame[column].isin(allowed).to_numpy()
    if query.direction == "over":
        keep &= frame["distance"].to_numpy() > 0
    elif query.direction == "under":
        keep &= frame["distance"].to_numpy() < 0
    return frame[keep]


def sort_predictions(frame: pd.DataFrame, by: str = "most wrong", seed: int = 0) -> pd.DataFrame:
    """Most wrong first (bins off, then confidence, then age error), most confident first, largest
    age error first, or a seeded shuffle.

    Without bin probabilities (a rebinned table) confidence is left out: "most wrong" breaks ties by
    the age error, and "confidence" falls back to it.
    """
    if by == "random":
        return frame.iloc[np.random.default_rng(seed).permutation(len(frame))]
    has_confidence = frame["confidence"].notna().any()
    if by == "most wrong":
        keys = ["abs_distance", *(["confidence"] if has_confidence else []), "abs_age_error"]
        return frame.sort_values(keys, ascending=False, kind="stable", na_position="last")
    if by == "confidence" and has_confidence:
        return frame.sort_values(
            ["confidence", "abs_age_error"], ascending=False, kind="stable", na_position="last"
        )
    if by in ("confidence", "age error"):
        return frame.sort_values("abs_age_error", ascending=False, kind="stable")
    raise ValueError(f"sort {by!r}: choose from {', '.join(SORTS)}")


def query_gallery(frame: pd.DataFrame, query: GalleryQuery) -> pd.DataFrame:
    """Filter, then sort."""
    return sort_predictions(filter_predictions(frame, query), query.sort, query.seed)


def page_count(n_rows: int, page_size: int) -> int:
    return max(1, math.ceil(n_rows / page_size))


def page_of(frame: pd.DataFrame, page: int, page_size: int) -> pd.DataFrame:
    """Rows of 1-based ``page``; a page past the end gives the last page."""
    page = min(max(1, page), page_count(len(frame), page_size))
    return frame.iloc[(page - 1) * page_size : page * page_size]


def distance_text(distance: int) -> str:
    """``0`` -> ``"exact bin"``, ``2`` -> ``"+2 bins"``, ``-1`` -> ``"-1 bin"``."""
    distance = int(distance)
    if distance == 0:
        return "exact bin"
    return f"{distance:+d} bin{'s' if abs(distance) != 1 else ''}"


def tile_lines(row: Any) -> list[str]:
    """What a gallery tile says, one line each: the truth (bin, age, gender, ethnicity), the
    prediction (bin with its probability, the distance, the age), the gender guess, and the file.

    ``["true: Adult (25-34) · 29 y · Female · Asian",
    "predicted: Teen (13-19) 71% · -2 bins · 24.1 y", "gender guess: Male 88%, wrong",
    "29_1_2_20170116174525125.jpg.chip.jpg"]``
    """
    prob = "" if pd.isna(row.confidence) else f" {row.confidence:.0%}"
    female = float(row.prob_female)
    gender_prob = female if int(row.pred_gender) == 1 else 1 - female
    verdict = "right" if row.gender_correct else "wrong"
    return [
        f"true: {row.true_label} · {int(row.age)} y · {GENDERS[int(row.gender)]} · {RACES[int(row.race)]}",
        f"predicted: {row.pred_label}{prob} · {distance_text(row.distance)} · {row.pred_age:.1f} y",
        f"gender guess: {row.pred_gender_label} {gender_prob:.0%}, {verdict}",
        os.path.basename(row.path),
    ]


def tile_caption(row: Any) -> str:
    """The tile's lines as one text, a line each."""
    return "\n".join(tile_lines(row))


def tile_markdown(row: Any) -> str:
    """The tile's lines as Markdown, with hard line breaks (a plain newline would join them)."""
    truth, prediction, gender, file = tile_lines(row)
    return "  \n".join([truth, f"**{prediction}**", gender, f"`{file}`"])


def bin_probabilities(row: Any, labels: Sequence[str]) -> pd.DataFrame | None:
    """The model's probability for every bin of one prediction (``bin``, ``label``, ``probability``,
    and whether the bin is the true one or the predicted one), or None after rebinning."""
    values = [getattr(row, f"bin_prob_{k}", None) for k in range(len(labels))]
    if any(v is None or pd.isna(v) for v in values):
        return None
    return pd.DataFrame(
        {
            "bin": range(len(labels)),
            "label": list(labels),
            "probability": np.asarray(values, dtype=float),
            "true": [k == int(row.true_bin) for k in range(len(labels))],
            "predicted": [k == int(row.pred_bin) for k in range(len(labels))],
        }
    )


def query_from_selection(points: Sequence[dict[str, Any]], chart: str) -> dict[str, Any]:
    """Gallery filters for a Plotly selection.

    ``chart="confusion"``: points sit at x = predicted bin, y = true bin; the result keeps exactly
    those cells (several cells give the rows of their true and predicted bins). ``chart="distance"``: points carry the signed distance as ``x``; the result
    keeps exactly that distance and its direction (one bar), or the union of bins when several
    cells are picked.
    """
    if not points:
        return {}
    if chart == "confusion":
        # The cell markers sit at x = predicted bin, y = true bin.
        cells = {(int(round(float(p["y"]))), int(round(float(p["x"])))) for p in points}
        return {
            "true_bins": tuple(sorted({t for t, _ in cells})),
            "pred_bins": tuple(sorted({q for _, q in cells})),
        }
    if chart == "distance":
        distances = sorted({int(round(float(p["x"]))) for p in points})
        signs = {int(np.sign(d)) for d in distances}
        direction = {1: "over", -1: "under"}.get(signs.pop(), "any") if len(signs) == 1 else "any"
        if len({abs(d) for d in distances}) == 1:
            return {"distance": abs(distances[0]), "at_least": False, "direction": direction}
        return {"distance": min(abs(d) for d in distances), "at_least": True, "direction": direction}
    raise ValueError(f"chart {chart!r}: 'confusion' or 'distance'")


# --- confident mistakes ------------------------------------------------------------------------


def confident_mistakes(
    frame: pd.DataFrame,
    index_frame: pd.DataFrame | None = None,
    limit: int = 12,
    only_conflicts: bool = False,
) -> pd.DataFrame:
    """The most confident wrong bin predictions, often label noise.

    With ``index_frame`` (``agelab.data.load_index(folder).frame``), each mistake gets its
    ``dup_group`` and a ``conflicting_duplicates`` list: the byte-identical copies under other
    names whose labels disagree, as dicts with path, file, age, gender, race. ``only_conflicts``
    keeps only the mistakes that have such copies.
    """
    wrong = frame[frame["distance"] != 0]
    if only_conflicts:
        conflicted = (
            set() if index_frame is None else set(index_frame.loc[index_frame["dup_conflict"], "path"])
        )
        wrong = wrong[wrong["path"].isin(conflicted)]
    wrong = sort_predictions(wrong, "confidence").head(limit).copy()
    wrong["dup_group"] = -1
    wrong["conflicting_duplicates"] = [[] for _ in range(len(wrong))]
    if index_frame is None or wrong.empty:
        return wrong
    by_path = index_frame.set_index("path")
    conflicts = index_frame[index_frame["dup_conflict"] & (index_frame["dup_group"] >= 0)]
    groups = {g: members for g, members in conflicts.groupby("dup_group")}
    dup_groups, duplicates = [], []
    for path in wrong["path"]:
        group = int(by_path.at[path, "dup_group"]) if path in by_path.index else -1
        dup_groups.append(group)
        members = groups.get(group)
        if members is None:
            duplicates.append([])
            continue
        others = members[members["path"] != path]
        duplicates.append(others[["path", "file", "age", "gender", "race"]].to_dict("records"))
    wrong["dup_group"] = dup_groups
    wrong["conflicting_duplicates"] = duplicates
    return wrong


def image_folder(frame: pd.DataFrame) -> Path | None:
    """The one folder all images of a table sit in, or None when they are spread over several."""
    folders = {os.path.dirname(p) for p in frame["path"]}
    return Path(folders.pop()) if len(folders) == 1 else None


# --- export ------------------------------------------------------------------------------------

EXPORT_COLUMNS = [
    "path",
    "age",
    "gender",
    "race",
    "ethnicity",
    "true_bin",
    "true_label",
    "pred_bin",
    "pred_label",
    "confidence",
    "distance",
    "pred_age",
    "age_error",
    "pred_gender",
    "prob_female",
]


def export_csv(frame: pd.DataFrame) -> bytes:
    """The rows as CSV (UTF-8), with the labels a reader needs."""
    columns = [c for c in EXPORT_COLUMNS if c in frame.columns]
    buffer = io.StringIO()
    frame[columns].to_csv(buffer, index=False)
    return buffer.getvalue().encode("utf-8")


# --- where predictions live --------------------------------------------------------------------


@dataclass(frozen=True)
class PredictionSource:
    """A predictions table the Review page can open: a run's, or one the evaluate verb saved."""

    name: str
    predictions: Path
    bins: str
    kind: str  # "run" or "evaluation"
    info: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def evaluations_dir() -> Path:
    """Where ``evaluate`` saves predictions when no ``--out`` is given."""
    from agelab.paths import runs_dir

    return runs_dir() / "evaluations"


def list_sources() -> list[PredictionSource]:
    """Runs that have test-split predictions (newest first), then saved evaluations (newest first)."""
    from agelab.runs import list_runs

    sources = [
        PredictionSource(
            run.name,
            run.path / "predictions.parquet",
            str(run.config.get("bins", "seed10")),
            "run",
            run.config,
        )
        for run in list_runs()
        if (run.path / "predictions.parquet").is_file()
    ]
    folder = evaluations_dir()
    if folder.is_dir():
        saved = sorted(folder.glob("*.parquet"), key=lambda p: p.stat().st_mtime, reverse=True)
        for predictions in saved:
            info = atomic.read_cache_json(predictions.with_suffix(".json"), {})
            info = info if isinstance(info, dict) else {}
            sources.append(
                PredictionSource(
                    f"evaluation: {predictions.stem}",
                    predictions,
                    str(info.get("bins", "seed10")),
                    "evaluation",
                    info,
                )
            )
    return sources


# --- the evaluate verb -------------------------------------------------------------------------


@dataclass
class FolderEvaluation:
    """Predictions for every usable image of a folder, and the files that were skipped (with why)."""

    predictions: pd.DataFrame
    skipped: list[dict[str, str]]
    scheme: BinScheme
    seconds: float

    @property
    def skipped_counts(self) -> dict[str, int]:
        counts = {"malformed_name": 0, "unreadable": 0}
        for item in self.skipped:
            counts[item["kind"]] += 1
        return counts


def resolve_model(spec: str | Path) -> Path:
    """A model file from a ``.keras`` path, a run folder, or the name of a run under the runs folder."""
    from agelab.paths import runs_dir

    spec = Path(spec)
    for candidate in (spec, runs_dir() / spec):
        if candidate.is_dir() and (candidate / "model.keras").is_file():
            return candidate / "model.keras"
        if candidate.is_file() and candidate.suffix == ".keras":
            return candidate
        if candidate.with_suffix(".keras").is_file() and candidate.suffix != ".keras":
            return candidate.with_suffix(".keras")
    raise FileNotFoundError(
        f"no model at {str(spec)!r}: give a .keras file (with its .json sidecar), a run folder that "
        f"holds model.keras, or the name of a run under {runs_dir()}"
    )


def predictions_frame(
    records: list[dict[str, Any]], outputs: dict[str, np.ndarray], native: BinScheme, scheme: BinScheme
) -> pd.DataFrame:
    """A predictions-contract table from label records and the model's outputs.

    Under the model's own scheme ``pred_bin`` is the most probable bin and the probabilities are
    kept; under another scheme both bins come from ages (true from ``age``, predicted from
    ``pred_age``).
    """
    frame = pd.DataFrame(records, columns=["path", "age", "gender", "race"])
    found = [r.get("face_found") for r in records]
    if any(f is not None for f in found):
        frame["face_found"] = found
    probs = np.asarray(outputs["age_bin"], dtype=float).reshape(len(frame), native.num_bins)
    pred_age = np.asarray(outputs["age"], dtype=float).reshape(-1)
    prob_female = np.asarray(outputs["prob_female"], dtype=float).reshape(-1)
    if scheme.spec == native.spec:
        frame["true_bin"] = native.bin_of(frame["age"].to_numpy())
        frame["pred_bin"] = probs.argmax(axis=1) if len(frame) else np.zeros(0, dtype=int)
        for k in range(probs.shape[1]):
            frame[f"bin_prob_{k}"] = probs[:, k]
    else:
        frame["true_bin"] = scheme.bin_of(frame["age"].to_numpy())
        frame["pred_bin"] = scheme.bin_of(pred_age)
    frame["pred_age"] = pred_age
    frame["pred_gender"] = (prob_female >= 0.5).astype(int)
    frame["prob_female"] = prob_female
    return frame


def predict_files(
    predictor: Any,
    items: Iterable[tuple[str, Any]],
    native: BinScheme,
    scheme: BinScheme,
    batch_size: int = 64,
    progress: Any = None,
    total: int = 0,
    detect: bool = False,
) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """Predict ``(path, labels)`` pairs in batches; files that cannot be decoded are skipped.

    With ``detect``, each image's input is its labelled face's aligned crop, exactly as training
    made it (:func:`agelab.crop_cache.labelled_face_crop`; column ``face_found`` says whether the
    detector saw the face); without, the whole image is the model's input.
    """
    from agelab.crop_cache import labelled_face_crop
    from agelab.faces import FaceDetector, ImageError, load_image

    records: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    outputs: dict[str, list[np.ndarray]] = {"age_bin": [], "age": [], "prob_female": []}
    batch: list[np.ndarray] = []
    batch_records: list[dict[str, Any]] = []

    prepare = getattr(predictor, "prepare", None)

    def flush() -> None:
        if not batch:
            return
        if prepare is not None:
            result = predictor.predict_batch(np.stack(batch))
        else:
            result = predictor.predict_crops(batch)
        for key in outputs:
            outputs[key].append(np.asarray(result[key], dtype=float).reshape(len(batch), -1))
        records.extend(batch_records)
        batch.clear()
        batch_records.clear()

    with contextlib.ExitStack() as stack:
        detector = stack.enter_context(FaceDetector()) if detect else None
        for i, (path, labels) in enumerate(items):
            try:
                image = load_image(path)
            except ImageError as err:
                skipped.append({"file": Path(path).name, "kind": "unreadable", "reason": str(err)})
                continue
            found = None
            if detector is not None:
                image, found = labelled_face_crop(image, detector, predictor.image_size)
            # Resized as it is read: a batch of full-resolution photos could take gigabytes.
            batch.append(prepare([image])[0] if prepare is not None else image)
            del image
            batch_records.append(
                {
                    "path": str(Path(path).resolve()),
                    "age": labels.age,
                    "gender": labels.gender,
                    "race": labels.race,
                    "face_found": found,
                }
            )
            if len(batch) >= batch_size:
                flush()
                if progress:
                    progress(i + 1, total)
        flush()
    if progress:
        progress(total, total)
    joined = {
        key: np.concatenate(parts) if parts else np.zeros((0, native.num_bins if key == "age_bin" else 1))
        for key, parts in outputs.items()
    }
    return predictions_frame(records, joined, native, scheme), skipped


def evaluate_folder(
    predictor: Any,
    folder: str | Path,
    scheme: BinScheme | str | None = None,
    batch_size: int = 64,
    progress: Any = None,
    detect: bool | None = None,
) -> FolderEvaluation:
    """Run ``predictor`` on every UTKFace-named image in ``folder`` (not recursive).

    Each file whose name does not parse, or which cannot be decoded, is skipped and recorded with
    its reason; nothing in the folder stops the evaluation. ``detect`` (default: when the model was
    trained on aligned crops, per its sidecar's ``crop``) feeds it the face detector's aligned crop.
    """
    from agelab.data import MalformedName, is_file_entry, parse_name

    started = time.perf_counter()
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder {folder} does not exist or is not a folder")
    native = get_scheme(predictor.scheme)
    scheme = native if scheme is None else get_scheme(scheme)
    try:
        entries = sorted((e for e in os.scandir(folder) if is_file_entry(e)), key=lambda e: e.name)
    except PermissionError:
        raise FileNotFoundError(
            f"data folder {folder} cannot be listed (permission denied); give your user read access to it"
        ) from None
    items: list[tuple[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for entry in entries:
        try:
            items.append((entry.path, parse_name(entry.name)))
        except MalformedName as err:
            skipped.append({"file": entry.name, "kind": "malformed_name", "reason": str(err)})
    if detect is None:
        detect = uses_aligned_crops(predictor)
    frame, unreadable = predict_files(
        predictor, items, native, scheme, batch_size, progress, len(items), detect
    )
    return FolderEvaluation(frame, skipped + unreadable, scheme, time.perf_counter() - started)


def uses_aligned_crops(predictor: Any) -> bool:
    """Whether the model was trained on the face detector's aligned crops (its sidecar's ``crop``)."""
    return getattr(predictor, "meta", {}).get("crop") == "aligned"


def default_model_source() -> PredictionSource | None:
    """The shipped default model's predictions on the saved test split, computed once and saved.

    This is what lets a fresh clone review a model before training anything. The table is redone
    when the model file changes.
    """
    from agelab.data import Labels, load_dataset
    from agelab.paths import models_dir
    from agelab.predict import DEFAULT_MODEL_NAME, default_model, load_predictor

    model = default_model()
    if model is None or model.parent.resolve() != models_dir().resolve():
        return None  # a run's model: its run folder already holds its test predictions

    out = evaluations_dir() / f"{model.stem}-on-test-split.parquet"
    stat = model.stat()
    predictor = load_predictor(model)
    detect = uses_aligned_crops(predictor)
    # The input path is part of the stamp: a table made from whole images is redone for a model
    # that takes aligned crops (and the reverse), so Review shows what `evaluate` gives.
    stamp = f"{stat.st_size}-{stat.st_mtime_ns}-{'aligned' if detect else 'whole'}"
    info = atomic.read_cache_json(out.with_suffix(".json"), {})
    info = info if isinstance(info, dict) else {}
    if not out.is_file() or info.get("model_stamp") != stamp:
        scheme = get_scheme(predictor.scheme)
        test = load_dataset().query("split == 'test'")
        items = [(r.path, Labels(r.age, r.gender, r.race, "")) for r in test.itertuples()]
        frame, skipped = predict_files(predictor, items, scheme, scheme, detect=detect)
        atomic.write_parquet(out, frame)
        info = {"model": str(model), "model_stamp": stamp, "data": "test split", "bins": scheme.spec}
        info["default_model"] = model.name == DEFAULT_MODEL_NAME
        info["skipped"] = len(skipped)
        atomic.write_json(out.with_suffix(".json"), info)
    return PredictionSource(f"evaluation: {out.stem}", out, str(info["bins"]), "evaluation", info)


def default_out(model_label: str, data_folder: Path) -> Path:
    """``runs/evaluations/<model>-on-<folder>.parquet``; when that name already holds another folder's
    evaluation (two folders with one base name), the folder's path hash is added to the name."""
    out = evaluations_dir() / f"{model_label}-on-{data_folder.name}.parquet"
    saved = atomic.read_cache_json(out.with_suffix(".json"), {})
    if out.exists() and (not isinstance(saved, dict) or saved.get("data") != str(data_folder)):
        key = hashlib.sha1(str(data_folder).encode()).hexdigest()[:8]
        out = out.with_name(f"{model_label}-on-{data_folder.name}-{key}.parquet")
    return out


def _print_progress(done: int, total: int) -> None:
    print(f"\revaluating {done}/{total} files", end="" if done < total else "\n", file=sys.stderr, flush=True)


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agelab evaluate",
        description="Evaluate a saved agelab model on a folder of UTKFace-named images. Prints one JSON "
        "line of headline metrics on stdout; unreadable or badly named files are skipped and counted.",
    )
    parser.add_argument(
        "--model", required=True, help="a .keras file with its .json sidecar, a run folder, or a run name"
    )
    parser.add_argument(
        "--data", required=True, help="folder of images named age_gender_race_datetime.jpg.chip.jpg"
    )
    parser.add_argument(
        "--out",
        default=None,
        help="where to save the predictions table (Parquet); default runs/evaluations/<model>-on-<folder>.parquet",
    )
    parser.add_argument(
        "--bins",
        default=None,
        help="bin scheme (seed10, equal12, decades or edges like 0,3,13,20,40,60); default: the model's. "
        "Another scheme derives the bins from the predicted age.",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="images per prediction batch (default 64)")
    crop = parser.add_mutually_exclusive_group()
    crop.add_argument(
        "--detect",
        dest="detect",
        action="store_true",
        default=None,
        help="feed the face detector's aligned crop (the default for models trained with crop=aligned)",
    )
    crop.add_argument(
        "--no-detect", dest="detect", action="store_false", help="feed each whole image as the face crop"
    )
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size {args.batch_size}: must be at least 1")
    try:
        scheme = None if args.bins is None else get_scheme(args.bins)
        model_path = resolve_model(args.model)
        if not Path(args.data).is_dir():
            raise FileNotFoundError(f"data folder {args.data!r} does not exist or is not a folder")
        if args.out and Path(args.out).is_dir():
            raise FileNotFoundError(
                f"--out {args.out!r} is a folder; give a file name such as {str(Path(args.out) / 'predictions.parquet')!r}"
            )
    except (ValueError, FileNotFoundError) as err:
        print(f"agelab evaluate: {err}", file=sys.stderr)
        return 2

    from agelab.predict import load_predictor

    try:
        predictor = load_predictor(model_path)
    except Exception as err:  # noqa: BLE001  any load failure is reported in one line, naming the file
        print(f"agelab evaluate: cannot load the model {model_path}: {err}", file=sys.stderr)
        return 1
    try:
        result = evaluate_folder(
            predictor,
            args.data,
            scheme,
            batch_size=args.batch_size,
            progress=_print_progress if sys.stderr.isatty() else None,
            detect=args.detect,
        )
    except (FileNotFoundError, RuntimeError) as err:  # an unlistable folder, no face detector model
        print(f"agelab evaluate: {err}", file=sys.stderr)
        return 2
    model_label = model_path.parent.name if model_path.name == "model.keras" else model_path.stem
    data_folder = Path(args.data).resolve()
    out = Path(args.out) if args.out else default_out(model_label, data_folder)
    counts = result.skipped_counts
    summary: dict[str, Any] = {"n": len(result.predictions), "skipped": len(result.skipped)}
    if "face_found" in result.predictions:
        # Counted, not skipped: such an image is predicted whole, as training used it.
        summary["no_face_found"] = int((~result.predictions["face_found"].astype(bool)).sum())
    if len(result.predictions):
        summary.update(headline(prepare(result.predictions, result.scheme)))
    summary.update(
        {
            "skipped_malformed_name": counts["malformed_name"],
            "skipped_unreadable": counts["unreadable"],
            "bins": result.scheme.spec,
            "model": str(model_path),
            "data": str(data_folder),
            "out": str(out) if len(result.predictions) else None,
            "seconds": round(result.seconds, 2),
        }
    )
    summary = atomic.json_safe(summary)
    save_error = None
    if len(result.predictions):
        try:
            atomic.write_parquet(out, result.predictions)
            atomic.write_json(out.with_suffix(".json"), {**summary, "skipped_files": result.skipped})
        except OSError as err:
            out.unlink(missing_ok=True)  # no table without its summary
            summary["out"] = None
            save_error = f"cannot save the predictions to {out} ({err.strerror or err}); the metrics above were not saved"
    for item in result.skipped[:20]:
        print(f"  skipped {item['file']}: {item['reason']}", file=sys.stderr)
    if len(result.skipped) > 20:
        print(f"  ... and {len(result.skipped) - 20} more skipped files", file=sys.stderr)
    print(atomic.dumps(summary))
    if save_error:
        print(f"agelab evaluate: {save_error}", file=sys.stderr)
        return 1
    if not len(result.predictions):
        print(f"agelab evaluate: no usable UTKFace-named image in {data_folder}", file=sys.stderr)
        return 1
    print(
        f"{summary['n']} images, {summary['skipped']} skipped: exact {summary['exact']:.1%}, within 1 bin "
        f"{summary['within1']:.1%}, age MAE {summary['mae']:.2f}, gender accuracy {summary['gender_acc']:.1%} "
        f"[{result.scheme.spec}]; predictions in {out}",
        file=sys.stderr,
    )
    return 0
