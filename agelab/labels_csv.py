"""The labelled-folder format: images beside a ``labels.csv`` with ``file,age_low,age_high,gender`` and an
optional ``ethnicity``. An exact age has ``age_low == age_high``; a range such as FairFace's ``20-29`` is
``20,29``. Gender is ``female``/``male`` (or ``f``/``m``, ``1``/``0``). Ethnicity is UTKFace's five
groups by name or code, FairFace's seven names, or empty for unknown (``-1``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from agelab.bins import MAX_AGE

LABELS_FILE = "labels.csv"
REQUIRED = ("file", "age_low", "age_high", "gender")
UNKNOWN_RACE = -1
GENDER_CODES = {"female": 1, "f": 1, "woman": 1, "1": 1, "male": 0, "m": 0, "man": 0, "0": 0}
# UTKFace's codes (agelab.data.RACES); FairFace's finer groups fold into them as UTKFace defines them.
RACE_CODES = {
    "white": 0,
    "0": 0,
    "black": 1,
    "1": 1,
    "asian": 2,
    "east asian": 2,
    "southeast asian": 2,
    "east_asian": 2,
    "southeast_asian": 2,
    "2": 2,
    "indian": 3,
    "3": 3,
    "others": 4,
    "other": 4,
    "latino_hispanic": 4,
    "latino hispanic": 4,
    "middle eastern": 4,
    "middle_eastern": 4,
    "4": 4,
    "": UNKNOWN_RACE,
    "unknown": UNKNOWN_RACE,
    "-1": UNKNOWN_RACE,
}


class LabelsError(ValueError):
    """A labels CSV that cannot be used; the message names the file, the row and the column."""


def read_table(path: str | Path) -> pd.DataFrame:
    """The CSV as text columns; raises :class:`LabelsError` when it cannot be read or lacks a column."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise LabelsError(
            f"{path}: cannot be read as CSV ({err}); write it as file,age_low,age_high,gender"
        ) from None
    table.columns = [str(c).strip().lower() for c in table.columns]
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise LabelsError(
            f"{path}: missing column(s) {', '.join(missing)}; the header must name {','.join(REQUIRED)} "
            "(and optionally ethnicity)"
        )
    return table


def parse_rows(table: pd.DataFrame) -> pd.DataFrame:
    """One row per CSV row: ``file, age_low, age_high, gender, race`` and ``reason`` (None when the row
    is usable, else what is wrong with it, naming the column and value)."""
    out = pd.DataFrame({"file": table["file"].str.strip()})
    reasons = pd.Series([None] * len(table), index=table.index, dtype=object)

    def fail(mask: pd.Series, message: pd.Series | str) -> None:
        fresh = mask & reasons.isna()
        reasons[fresh] = message[fresh] if isinstance(message, pd.Series) else message

    fail(out["file"] == "", "the file column is empty")
    for column in ("age_low", "age_high"):
        values = pd.to_numeric(table[column].str.strip(), errors="coerce")
        bad = values.isna() | ~np.isfinite(values.fillna(0))
        fail(bad, f"{column}=" + table[column].map(repr) + " is not an age in years")
        fail(
            ~bad & ((values < 0) | (values > MAX_AGE)),
            f"{column}=" + table[column] + f" is outside 0-{MAX_AGE}",
        )
        out[column] = values.where(~bad, 0.0).clip(0, MAX_AGE).astype(float)
    fail(out["age_low"] > out["age_high"], "age_low is above age_high")
    genders = table["gender"].str.strip().str.lower().map(GENDER_CODES)
    fail(genders.isna(), "gender=" + table["gender"].map(repr) + " is not female or male (or 1 or 0)")
    out["gender"] = genders.fillna(0).astype(int)
    if "ethnicity" in table.columns:
        races = table["ethnicity"].str.strip().str.lower().map(RACE_CODES)
        fail(
            races.isna(),
            "ethnicity="
            + table["ethnicity"].map(repr)
            + " is not White, Black, Asian, Indian, Others or empty",
        )
        out["race"] = races.fillna(UNKNOWN_RACE).astype(int)
    else:
        out["race"] = UNKNOWN_RACE
    out["reason"] = reasons
    return out


def read_labels(path: str | Path) -> pd.DataFrame:
    """The labels table, strictly: raises :class:`LabelsError` naming the first bad row (for scoring a
    labelled set, where a silently dropped row would change the score)."""
    rows = parse_rows(read_table(path))
    bad = rows["reason"].notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise LabelsError(f"{path}: row {row + 2}: {rows['reason'].iloc[row]}; fix or remove that row")
    return rows.drop(columns="reason")


def is_labelled_folder(folder: str | Path) -> bool:
    return (Path(folder) / LABELS_FILE).is_file()
