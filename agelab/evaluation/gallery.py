"""The Review gallery: which faces to show (filters, order, pages), what each tile says, and the
gallery filters a Plotly selection on the confusion or distance chart stands for."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from agelab.data import GENDERS, RACES

SORTS = ("most wrong", "confidence", "age error", "random")


DIRECTIONS = ("any", "over", "under")


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


def image_folder(frame: pd.DataFrame) -> Path | None:
    """The one folder all images of a table sit in, or None when they are spread over several."""
    folders = {os.path.dirname(p) for p in frame["path"]}
    return Path(folders.pop()) if len(folders) == 1 else None


def model_input_size(info: dict[str, Any]) -> int | None:
    """The input size of the model behind a predictions source: a run's ``image_size``, or the size in
    an evaluated model's sidecar; None when neither says."""
    if isinstance(info.get("image_size"), int | float):
        return int(info["image_size"])
    if info.get("model"):
        from agelab.model_files import read_sidecar

        try:
            size = read_sidecar(str(info["model"])).get("image_size")
        except (OSError, ValueError):
            return None
        return int(size) if isinstance(size, int | float) else None
    return None


def saw_aligned_crops(frame: pd.DataFrame) -> bool:
    """Whether the model of a predictions table was given the detector's aligned crops: ``face_found``
    is recorded then (True or False per image), and empty when it was given the whole images."""
    return "face_found" in frame.columns and bool(frame["face_found"].notna().any())


def model_view(path: str | Path, aligned: bool, image_size: int, detector: Any = None) -> np.ndarray:
    """The input the model was given for the image at ``path``, as RGB ``uint8``: its aligned crop
    (the crop cache's, which training wrote, else made again by the same function with ``detector``
    or a new one) or, for a model given whole images, the image resized. Raises ImageError."""
    from agelab.crop import model_input
    from agelab.crop_cache import crop_folder, labelled_face_crop
    from agelab.images import ImageError, load_image

    path = Path(path)
    if aligned:
        cached = crop_folder(path.parent, image_size) / (path.name + ".png")
        if cached.is_file():
            try:
                return load_image(cached)
            except ImageError:
                pass  # a damaged cache file: made again below, as training would
        if detector is None:
            from agelab.faces import FaceDetector

            with FaceDetector() as made:
                return labelled_face_crop(load_image(path), made, image_size)[0]
        return labelled_face_crop(load_image(path), detector, image_size)[0]
    return model_input(load_image(path), image_size)
