"""Training data from several sources: UTKFace-named folders and labelled folders (images beside a
``labels.csv``, :mod:`agelab.labels_csv`), each indexed, deduplicated and split on its own, then mixed.

``data=`` names one folder or several, comma-separated. Each source keeps its own saved content-hash
split; a photo that sits in two sources takes the split of the first, and is kept once, so no photo
crosses splits between sources either.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from agelab.data import (
    MALFORMED_COLUMNS,
    Index,
    cached_index,
    dedupe,
    in_layout,
    index_cache_dir,
    listing,
    mark_duplicates,
    md5_of,
    saved_index,
    signature_of,
    unreadable_reason,
)
from agelab.data import load_index as load_utkface_index
from agelab.labels_csv import LABELS_FILE, is_labelled_folder, parse_rows, read_table
from agelab.paths import data_dir
from agelab.saved_split import load_split
from agelab.storage import local_path

LABELLED_INDEX_VERSION = 2
# A labelled folder's index: UTKFace's columns, then the labelled age range. Its age is a float where
# some range has a midpoint between two whole years.
LABELLED_COLUMNS = {
    "path": "text",
    "file": "text",
    "age": "number",
    "gender": "integer",
    "race": "integer",
    "md5": "text",
    "dup_group": "integer",
    "dup_conflict": "bool",
    "age_low": "number",
    "age_high": "number",
}


class SourceError(ValueError):
    """A ``data=`` or ``source_weights=`` value that cannot be used; the message names it."""


@dataclass(frozen=True)
class Source:
    """One folder of training data and the weight each of its faces carries in the loss."""

    name: str
    folder: Path
    weight: float = 1.0

    @property
    def labelled(self) -> bool:
        return is_labelled_folder(self.folder)


def comma_list(text: str | Path | None) -> list[str]:
    """The non-empty, stripped items of a comma-separated ``data=`` or ``source_weights=`` value."""
    return [part.strip() for part in str(text or "").split(",") if part.strip()]


def change_times(data: str | Path | None) -> tuple[float, ...]:
    """Each ``data=`` folder's change time and its ``labels.csv``'s (0 for one that is missing): a cache
    key that changes when a folder or its labels are edited."""
    paths = [path for folder in comma_list(data) for path in (Path(folder), Path(folder) / LABELS_FILE)]
    return tuple(path.stat().st_mtime if path.exists() else 0.0 for path in paths)


def parse_sources(data: str | Path | None, weights: str = "") -> list[Source]:
    """The sources of ``data`` (comma-separated folders; empty: AGELAB_DATA) with ``weights`` (a
    comma-separated number per source; empty: 1 each)."""
    folders = comma_list(data) or [str(data_dir())]
    given = comma_list(weights)
    if given and len(given) != len(folders):
        raise SourceError(
            f"source_weights={weights!r} gives {len(given)} weight(s) for {len(folders)} source(s) in data=; "
            "give one number per folder, in the same order"
        )
    values = []
    for text in given or ["1"] * len(folders):
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not np.isfinite(value) or value <= 0:
            raise SourceError(f"source_weights: {text!r} is not a positive number")
        values.append(value)
    sources, names = [], set()
    for folder, weight in zip(folders, values):
        path = Path(folder.split("://", 1)[-1]).expanduser()  # a URI is named by its path too
        name = path.name or str(path)
        while name in names:  # two folders of one name: the second is told apart by its parent
            name = f"{path.parent.name}/{name}"
            path = path.parent
        names.add(name)
        # An object-store prefix (s3://, gs://) is read from its local copy (agelab.storage).
        sources.append(Source(name, local_path(folder), weight))
    return sources


def load_index(
    folder: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    use_cache: bool = True,
) -> Index:
    """The index of a UTKFace folder (:func:`agelab.data.load_index`) or of a labelled folder."""
    folder = local_path(folder or data_dir())
    if is_labelled_folder(folder):
        return _labelled_index(folder.resolve(), progress, use_cache)
    return load_utkface_index(folder, progress, use_cache)


def _labelled_index(folder: Path, progress: Callable[[int, int], None] | None, use_cache: bool) -> Index:
    """Every row of ``labels.csv`` whose file exists and whose labels parse; the rest, and images the CSV
    does not list, are reported in ``malformed`` with the reason."""
    start = time.perf_counter()
    labels_path = folder / LABELS_FILE
    table = read_table(labels_path)
    entries = listing(folder)
    stat = labels_path.stat()
    signature = hashlib.sha1(
        f"{LABELLED_INDEX_VERSION}\0{signature_of(entries)}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()
    ).hexdigest()
    cache = index_cache_dir(folder)
    cached = cached_index(folder, cache, signature, LABELLED_COLUMNS, start) if use_cache else None
    if cached is not None:
        return cached

    rows = parse_rows(table)
    present = {entry.name for entry in entries}
    repeated = rows["file"].duplicated(keep="first")
    rows.loc[repeated & rows["reason"].isna(), "reason"] = f"listed more than once in {LABELS_FILE}"
    unsafe = rows["file"].str.contains(r"[/\\]", regex=True) | rows["file"].isin([".", ".."])
    rows.loc[unsafe & rows["reason"].isna(), "reason"] = "names a path, not a file in this folder"
    absent = ~rows["file"].isin(present)
    rows.loc[absent & rows["reason"].isna(), "reason"] = f"listed in {LABELS_FILE} but not found in {folder}"
    unlisted = sorted(present - set(rows["file"]))
    extra = pd.DataFrame({"file": unlisted, "reason": f"an image that {LABELS_FILE} does not list"})
    rows = pd.concat([rows, extra], ignore_index=True)
    rows["path"] = [str(folder / name) for name in rows["file"]]
    md5s = []
    for i, (path, reason) in enumerate(zip(rows["path"], rows["reason"])):
        if isinstance(reason, str) and reason.startswith("listed in"):
            md5s.append(f"missing:{Path(path).name}")
            continue
        try:
            md5s.append(md5_of(path))
        except OSError as err:
            md5s.append(f"unreadable:{Path(path).name}")
            if not isinstance(reason, str):
                rows.loc[i, "reason"] = unreadable_reason(err)
        if progress and (i % 500 == 0 or i == len(rows) - 1):
            progress(i + 1, len(rows))
    rows["md5"] = md5s
    exact = rows["age_low"] == rows["age_high"]
    rows["age"] = np.where(exact, rows["age_low"], (rows["age_low"] + rows["age_high"]) / 2)
    everything = mark_duplicates(rows)
    is_malformed = everything["reason"].notna()
    frame = everything[~is_malformed].drop(columns="reason").reset_index(drop=True)
    if (frame["age"] == frame["age"].round()).all():
        frame["age"] = frame["age"].astype("int64")
    frame = in_layout(frame, LABELLED_COLUMNS)
    malformed = in_layout(everything[is_malformed], MALFORMED_COLUMNS)
    return saved_index(folder, cache, signature, frame, malformed, start)


@dataclass
class SourceReport:
    """One source's index summary, and how many of its faces the mix kept."""

    source: Source
    index: Index
    kept: int
    shared_with_earlier: int
    conflicting_across: int

    def summary(self) -> dict:
        return {
            "source": self.source.name,
            "folder": str(self.source.folder),
            "kind": "labelled" if self.source.labelled else "utkface",
            "weight": self.source.weight,
            **self.index.summary(kept=self.kept),
            "shared_with_earlier_source": self.shared_with_earlier,
            "conflicting_across_sources": self.conflicting_across,
        }


def load_sources(
    sources: list[Source], dedupe_policy: str = "drop_conflicts", seed: int = 0
) -> tuple[pd.DataFrame, list[SourceReport]]:
    """Every kept face of every source with its ``split``, ``source``, ``source_weight``, ``age_low``
    and ``age_high``, and a report
    per source. A photo found in an earlier source is kept there only, in that source's split; where
    the two sources' labels disagree it is dropped from both."""
    parts, indexes = [], []
    for source in sources:
        index = load_index(source.folder)
        split = load_split(index, seed)
        frame = dedupe(index.frame, dedupe_policy).copy()
        frame["split"] = frame["md5"].map(split)
        if "age_low" not in frame:
            frame["age_low"] = frame["age"].astype(float)
            frame["age_high"] = frame["age"].astype(float)
        frame["source"] = source.name
        frame["source_weight"] = source.weight
        parts.append(frame)
        indexes.append(index)
    mixed = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    first_source = mixed.groupby("md5")["source"].transform("first")
    later_copy = mixed["source"] != first_source
    labels = mixed.groupby("md5")[["age_low", "age_high", "gender"]].transform("nunique").max(axis=1)
    conflicting = labels > 1
    reports = []
    for source, index in zip(sources, indexes):
        mine = mixed["source"] == source.name
        reports.append(
            SourceReport(
                source,
                index,
                kept=int((mine & ~later_copy & ~conflicting).sum()),
                shared_with_earlier=int((mine & later_copy).sum()),
                conflicting_across=int((mine & conflicting & (first_source != source.name)).sum()),
            )
        )
    kept = mixed[~later_copy & ~(conflicting & mixed["md5"].duplicated(keep=False))]
    return kept.reset_index(drop=True), reports


def load_data(
    data: str | Path | None = None, weights: str = "", dedupe_policy: str = "drop_conflicts", seed: int = 0
) -> pd.DataFrame:
    """:func:`load_sources` of ``data=`` and ``source_weights=``, without the reports."""
    return load_sources(parse_sources(data, weights), dedupe_policy, seed)[0]


@dataclass
class Overview:
    """What the Dataset page shows of ``data=``: the kept faces of every source (``source`` column), the
    files left out and the byte-identical groups (each with its ``source``), the totals, and a row per
    source."""

    frame: pd.DataFrame
    malformed: pd.DataFrame
    duplicates: pd.DataFrame
    summary: dict
    sources: pd.DataFrame


def overview(data: str | Path | None, dedupe_policy: str = "drop_conflicts", weights: str = "") -> Overview:
    sources = parse_sources(data, weights)
    frame, reports = load_sources(sources, dedupe_policy)
    rows = [report.summary() for report in reports]
    malformed = pd.concat(
        [r.index.malformed.assign(source=r.source.name) for r in reports], ignore_index=True
    ).astype({"reason": str, "file": str})
    # Group numbers restart in each source: offset them so a group is one number across the mix.
    groups, offset = [], 0
    for report in reports:
        table = report.index.duplicate_groups.assign(source=report.source.name)
        table["dup_group"] = table["dup_group"] + offset
        offset = int(table["dup_group"].max()) + 1 if len(table) else offset
        groups.append(table)
    duplicates = pd.concat(groups, ignore_index=True)
    totals = {
        key: sum(int(row[key]) for row in rows)
        for key in ("total", "valid", "malformed", "duplicate_groups", "conflicting_groups")
    }
    totals.update(kept=int(len(frame)), sources=len(rows), cached=all(row["cached"] for row in rows))
    table = pd.DataFrame(rows)[
        [
            "source",
            "kind",
            "folder",
            "weight",
            "total",
            "valid",
            "malformed",
            "duplicate_groups",
            "conflicting_groups",
            "kept",
            "shared_with_earlier_source",
            "conflicting_across_sources",
        ]
    ]
    return Overview(frame, malformed, duplicates, totals, table)


EVALUATION_ONLY_MARKS = ("evaluation only", "never train")


def is_evaluation_only(folder: str | Path) -> bool:
    """Whether the folder's SOURCE.md or README.md says it is for evaluation only (never to train on)."""
    for name in ("SOURCE.md", "README.md"):
        try:
            text = (Path(folder) / name).read_text(encoding="utf-8", errors="replace")[:20_000].lower()
        except OSError:
            continue
        if any(mark in text for mark in EVALUATION_ONLY_MARKS):
            return True
    return False


def discover_sources(roots: list[Path]) -> list[Path]:
    """The training sources among the folders in ``roots``: UTKFace-named images or a labels.csv, and not
    marked evaluation only. Each folder once, by its resolved path."""
    from agelab.data import has_images

    found: dict[Path, Path] = {}
    for root in roots:
        try:
            children = sorted(p for p in Path(root).iterdir() if p.is_dir())
        except OSError:
            continue
        for child in children:
            if (is_labelled_folder(child) or has_images(child)) and not is_evaluation_only(child):
                found.setdefault(child.resolve(), child)
    return list(found.values())


def source_roots() -> list[Path]:
    """Where the Train page looks for sources: beside the dataset folder, and the mirror's data/."""
    from agelab.paths import mirror_dir

    roots = [data_dir().parent]
    mirror = mirror_dir()
    if mirror is not None:
        roots.append(mirror / "data")
    return roots
