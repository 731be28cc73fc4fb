"""Faces whose label looks wrong: marked on the Review page, kept beside the dataset's index, and
left out of training with ``train exclude=<marks.csv>``.

UTKFace's labels come from its file names and are noisy (ages 35-58 especially). A reviewer who sees
a face labelled 8 that is plainly 40 marks it; the mark is one row of ``marks.csv`` in the folder's
index cache (:func:`agelab.data.index_cache_dir`), never in the image folder, which may be
read-only. The file is plain CSV, so it can be exported, edited and passed to ``train``.
"""

from __future__ import annotations

import fcntl
import io
import os
import time
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from agelab import atomic, schemas
from agelab.data import MalformedName, index_cache_dir, parse_name

MARKS_FILE = "marks.csv"
REASON = "label looks wrong"
# The reasons a reviewer picks from (Review's two views, its face dialog): what is wrong with the face.
REASONS = ("age wrong", "gender wrong", "not a face", "duplicate", "other")
COLUMNS = ["file", "age", "gender", "race", "reason", "marked_at"]


def marks_path(folder: str | Path) -> Path:
    """Where the marks of the dataset ``folder`` are kept: beside its index, ``.../marks.csv``."""
    return index_cache_dir(folder) / MARKS_FILE


def _empty() -> pd.DataFrame:
    return pd.DataFrame(
        {c: pd.Series(dtype="int64" if c in ("age", "gender", "race") else object) for c in COLUMNS}
    )


def read_marks(path: str | Path) -> pd.DataFrame:
    """A marks CSV as a table (one row per file); an absent file is an empty table.

    Raises ValueError naming the file when it is not a CSV with a ``file`` column.
    """
    path = Path(path)
    if not path.exists():
        return _empty()
    table = schemas.read_csv_table(path, "marks CSV", required=("file",), text_columns=("file",))
    for column in COLUMNS:
        if column not in table.columns:
            table[column] = None
    return table[COLUMNS].drop_duplicates("file", keep="last").reset_index(drop=True)


def load_marks(folder: str | Path) -> pd.DataFrame:
    """The marks of the dataset ``folder``."""
    return read_marks(marks_path(folder))


def marked_files(folder: str | Path) -> set[str]:
    return set(load_marks(folder)["file"])


def excluded_files(path: str | Path) -> set[str]:
    """The file names a marks CSV lists (a ``path`` column's base names count too)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no marks file {path}")
    return set(read_marks(path)["file"].dropna().map(os.path.basename))


@contextmanager
def _locked(path: Path):
    # The Review page of two browser tabs may mark at once: one writer at a time.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _row(file: str, reason: str) -> dict:
    try:
        labels = parse_name(file)
        age, gender, race = labels.age, labels.gender, labels.race
    except MalformedName:
        age = gender = race = None
    return {"file": file, "age": age, "gender": gender, "race": race, "reason": reason, "marked_at": _now()}


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def set_mark(
    folder: str | Path, image: str | Path, marked: bool = True, reason: str = REASON
) -> pd.DataFrame:
    """Mark (or unmark) the image ``image`` (a path or a file name) of the dataset ``folder``;
    returns the marks after the change. Marking twice keeps one row."""
    path = marks_path(folder)
    file = os.path.basename(str(image))
    with _locked(path):
        table = read_marks(path)
        table = table[table["file"] != file]
        if marked:
            table = pd.concat([table, pd.DataFrame([_row(file, reason)])], ignore_index=True)
        atomic.write_text(path, table[COLUMNS].to_csv(index=False))
    return table.reset_index(drop=True)


def mark_failure(image: str | Path, err: Exception) -> str:
    """One sentence for a mark (or unmark) of ``image`` that could not be saved, and what to do."""
    if isinstance(err, OSError):
        return f"The mark of {os.path.basename(str(image))} was not saved: {atomic.why_not_written(marks_path(os.path.dirname(str(image))), err)}."
    return f"The mark of {os.path.basename(str(image))} was not saved: {err}."


def in_words(table: pd.DataFrame) -> pd.DataFrame:
    """The marks for a person to read: gender and ethnicity by name, not their codes."""
    from agelab.data import GENDERS, RACES

    def name(codes: pd.Series, names: dict[int, str]) -> pd.Series:
        return codes.map(lambda c: "" if pd.isna(c) else names.get(int(c), str(c)))

    return table.assign(gender=name(table["gender"], GENDERS), race=name(table["race"], RACES)).rename(
        columns={"race": "ethnicity", "marked_at": "marked at"}
    )


def export_csv(table: pd.DataFrame) -> bytes:
    """The marks as CSV bytes, the same format ``train exclude=`` reads."""
    buffer = io.StringIO()
    table[[c for c in COLUMNS if c in table.columns]].to_csv(buffer, index=False)
    return buffer.getvalue().encode("utf-8")


def marked_paths(paths: Iterable[str]) -> set[str]:
    """Which of ``paths`` are marked, each looked up in its own folder's marks."""
    paths = list(paths)
    by_folder: dict[str, set[str]] = {}
    for folder in {os.path.dirname(p) for p in paths}:
        by_folder[folder] = marked_files(folder)
    return {p for p in paths if os.path.basename(p) in by_folder[os.path.dirname(p)]}
