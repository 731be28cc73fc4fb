"""The UTKFace data layer: strict name parsing, the cached index and its duplicates. The dataset a run
trains on (the duplicate policy applied, and the saved split) is :mod:`agelab.saved_split`.

UTKFace labels live in the file name, ``age_gender_race_datetime.jpg.chip.jpg``. Names that do not
parse strictly are reported with a reason and left out, and byte-identical images that sit under
different names (often with conflicting labels) are found by content hash.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from agelab import atomic
from agelab.bins import MAX_AGE
from agelab.paths import cache_dir, data_dir

GENDERS = {0: "Male", 1: "Female"}
# -1: not labelled (a labelled folder without an ethnicity column, or an empty cell).
RACES = {0: "White", 1: "Black", 2: "Asian", 3: "Indian", 4: "Others", -1: "Unknown"}
SUFFIX = ".jpg.chip.jpg"
STRICT_NAME = re.compile(r"^(\d+)_([01])_([0-4])_(\d{17})\.jpg\.chip\.jpg$")
# The endings of the photo files agelab reads: what cameras, phones and scanners write and Pillow
# (agelab.images.load_image) decodes. The index lists these (UTKFace itself is all .jpg; any other image
# here is reported as a malformed name) and ignores every other file; `predict` reads them from folders.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
# 4: empty files and names that are not UTF-8 are left out with a reason.
INDEX_VERSION = 4
# The reasons a file is left out for its bytes or its name's encoding (beside malformed names).
EMPTY_FILE = "empty file (0 bytes)"
NOT_UTF8_NAME = "name is not valid UTF-8; rename it"
# What a cached index holds, and of what kind; a cache of another layout is rebuilt, not trusted.
INDEX_COLUMNS = {
    "path": "text",
    "file": "text",
    "age": "integer",
    "gender": "integer",
    "race": "integer",
    "md5": "text",
    "dup_group": "integer",
    "dup_conflict": "bool",
}
MALFORMED_COLUMNS = {
    "file": "text",
    "reason": "text",
    "path": "text",
    "md5": "text",
    "dup_group": "integer",
    "dup_conflict": "bool",
}


class MalformedName(ValueError):
    """A file name that does not follow ``age_gender_race_datetime.jpg.chip.jpg`` strictly."""


@dataclass(frozen=True)
class Labels:
    age: int
    gender: int
    race: int
    timestamp: str


def parse_name(name: str) -> Labels:
    """Labels from a UTKFace file name; raises :class:`MalformedName` saying what is wrong."""
    match = STRICT_NAME.match(name)
    if match:
        age = int(match.group(1))
        if not 1 <= age <= MAX_AGE:
            raise MalformedName(f"age {age} is outside 1-{MAX_AGE}")
        return Labels(age, int(match.group(2)), int(match.group(3)), match.group(4))
    raise MalformedName(_malformed_reason(name))


def _malformed_reason(name: str) -> str:
    if " " in name:
        return "contains a space"
    if not name.endswith(SUFFIX):
        if name.endswith("jpg.chip.jpg"):
            return "missing '.' before 'jpg.chip.jpg'"
        return f"does not end with {SUFFIX!r}"
    fields = name[: -len(SUFFIX)].split("_")
    if len(fields) == 3 and all(f.isdigit() for f in fields):
        if fields[1] not in {"0", "1"}:
            return f"gender {fields[1]!r} is not 0 (male) or 1 (female), and the race field is missing"
        return "race field missing (3 fields, expected age_gender_race_datetime)"
    if len(fields) != 4:
        return f"{len(fields)} '_'-separated fields, expected 4 (age_gender_race_datetime)"
    age, gender, race, stamp = fields
    if not age.isdigit():
        return f"age {age!r} is not a number"
    if gender not in {"0", "1"}:
        return f"gender {gender!r} is not 0 (male) or 1 (female)"
    if race not in {"0", "1", "2", "3", "4"}:
        return f"race {race!r} is not 0-4"
    if not stamp.isdigit():
        return f"timestamp {stamp!r} is not all digits"
    return f"timestamp has {len(stamp)} digits, expected 17"


@dataclass
class Index:
    """The index of one folder: ``frame`` (well-named images) and ``malformed`` (name, reason)."""

    folder: Path
    frame: pd.DataFrame
    malformed: pd.DataFrame
    cached: bool
    seconds: float

    @property
    def duplicate_groups(self) -> pd.DataFrame:
        """One row per file that shares its bytes with another (malformed names included)."""
        both = pd.concat([self.frame, self.malformed], ignore_index=True)
        dups = both[both["dup_group"] >= 0]
        return dups.sort_values(["dup_group", "file"])[
            ["dup_group", "file", "age", "gender", "race", "dup_conflict", "reason", "path"]
        ]

    def summary(self, kept: int | None = None) -> dict:
        groups = self.duplicate_groups[["dup_group", "dup_conflict"]].drop_duplicates()
        return {
            "total": int(len(self.frame) + len(self.malformed)),
            "valid": int(len(self.frame)),
            "malformed": int(len(self.malformed)),
            "duplicate_groups": int(len(groups)),
            "conflicting_groups": int(groups["dup_conflict"].sum()),
            "kept": int(len(dedupe(self.frame)) if kept is None else kept),
            "seconds": round(self.seconds, 3),
            "cached": self.cached,
        }


def listing(folder: Path) -> list[os.DirEntry]:
    """The image files of ``folder``, by name. An entry that cannot even be looked at (a symlink
    loop, a dangling link) is kept when its name looks like an image, so the index reports it."""
    if not folder.exists():
        raise FileNotFoundError(
            f"dataset folder {folder} does not exist: run `python -m agelab setup`, "
            "or point AGELAB_DATA (or --data) at a folder of UTKFace images"
        )
    if not folder.is_dir():
        raise NotADirectoryError(
            f"dataset folder {folder} is a file, not a folder: point AGELAB_DATA (or --data) at the "
            "folder that holds the UTKFace images"
        )
    try:
        found = list(os.scandir(folder))
    except OSError as err:
        raise PermissionError(
            f"dataset folder {folder} cannot be listed ({err.strerror or err}): make it readable"
        ) from None
    return sorted(
        (e for e in found if e.name.lower().endswith(IMAGE_SUFFIXES) and is_file_entry(e)),
        key=lambda e: e.name,
    )


def has_images(folder: str | Path) -> bool:
    """Whether ``folder`` holds at least one well-named UTKFace image (cheap: names only)."""
    try:
        with os.scandir(folder) as found:
            return any(STRICT_NAME.match(e.name) for e in found)
    except OSError:
        return False


def is_file_entry(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:  # ELOOP and the like: not a readable file, reported as unreadable
        return True


def signature_of(entries: list[os.DirEntry]) -> str:
    """Changes whenever a file is added, removed, renamed or rewritten."""
    digest = hashlib.sha1(str(INDEX_VERSION).encode())
    for entry in entries:
        # The name's own bytes: one that is not UTF-8 cannot be encoded as text.
        digest.update(os.fsencode(entry.name))
        try:
            stat = entry.stat()
            digest.update(f"\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except OSError as err:
            digest.update(f"\0{err.errno}\n".encode())
    return digest.hexdigest()


def printable_name(name: str) -> str:
    """``name`` as text that can be printed and saved: bytes that are not UTF-8 become ``\\xNN`` escapes."""
    return os.fsencode(name).decode("utf-8", errors="backslashreplace")


def is_utf8_name(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_KINDS = {"text": "str", "integer": "int64", "bool": "bool"}


def in_layout(frame: pd.DataFrame, layout: dict[str, str]) -> pd.DataFrame:
    """``frame``'s ``layout`` columns, each cast to its kind; so an empty column (no malformed name:
    every reason missing) is still text, and the cache it is saved to fits the layout when read."""
    return (
        frame[list(layout)]
        .astype({column: _KINDS[kind] for column, kind in layout.items() if kind in _KINDS})
        .reset_index(drop=True)
    )


def fits_layout(frame: pd.DataFrame, layout: dict[str, str]) -> bool:
    """Whether ``frame`` has exactly ``layout``'s columns, each of its kind (text, integer, bool)."""
    if list(frame.columns) != list(layout):
        return False
    checks = {
        "text": lambda c: pd.api.types.is_string_dtype(c) or pd.api.types.is_object_dtype(c),
        "integer": pd.api.types.is_integer_dtype,
        "bool": pd.api.types.is_bool_dtype,
        # Integer or float: a labelled folder's ages (whole years, or a range's midpoint).
        "number": lambda c: pd.api.types.is_numeric_dtype(c) and not pd.api.types.is_bool_dtype(c),
    }
    return all(checks[kind](frame[column]) for column, kind in layout.items())


def index_cache_dir(folder: str | Path) -> Path:
    """Where the index and split of ``folder`` are cached (inside the project, never the image folder)."""
    folder = Path(folder).resolve()
    key = hashlib.sha1(str(folder).encode()).hexdigest()[:12]
    return cache_dir() / f"{folder.name}-{key}"


def md5_of(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.md5(handle.read()).hexdigest()


def unreadable_reason(err: OSError) -> str:
    if err.errno == errno.ELOOP:
        return "cannot be read: a symbolic link that loops (too many levels of symbolic links)"
    return f"cannot be read ({err.strerror or err}): fix its permissions or remove it"


def mark_duplicates(frame: pd.DataFrame) -> pd.DataFrame:
    """Number the groups of byte-identical files and flag those whose labels disagree.

    A group with a malformed name counts as conflicting: that copy's labels cannot be trusted.
    """
    sizes = frame.groupby("md5")["md5"].transform("size")
    dup_md5 = sorted(frame.loc[sizes > 1, "md5"].unique())
    group_of = {md5: i for i, md5 in enumerate(dup_md5)}
    frame["dup_group"] = frame["md5"].map(group_of).fillna(-1).astype(int)
    grouped = frame.groupby("md5")
    n_labels = grouped[["age", "gender", "race"]].transform("nunique").max(axis=1)
    has_malformed = grouped["reason"].transform(lambda r: r.notna().any())
    frame["dup_conflict"] = (sizes > 1) & ((n_labels > 1) | has_malformed)
    return frame


def load_index(
    folder: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    use_cache: bool = True,
) -> Index:
    """The index of ``folder``: read from its Parquet cache, or built (hashing every file) when the
    folder changed since the cache was written, or when ``use_cache`` is false."""
    start = time.perf_counter()
    folder = Path(folder or data_dir()).resolve()
    entries = listing(folder)
    signature = signature_of(entries)
    cache = index_cache_dir(folder)
    cached = cached_index(folder, cache, signature, INDEX_COLUMNS, start) if use_cache else None
    if cached is not None:
        return cached
    rows = []
    for i, entry in enumerate(entries):
        rows.append(_index_row(entry))
        if progress and (i % 500 == 0 or i == len(entries) - 1):
            progress(i + 1, len(entries))
    columns = ["path", "file", "age", "gender", "race", "md5", "reason"]
    everything = mark_duplicates(pd.DataFrame(rows, columns=columns))
    is_malformed = everything["reason"].notna()
    frame = in_layout(everything[~is_malformed], INDEX_COLUMNS)
    malformed = in_layout(everything[is_malformed], MALFORMED_COLUMNS)
    return saved_index(folder, cache, signature, frame, malformed, start)


def cached_index(
    folder: Path, cache: Path, signature: str, layout: dict[str, str], start: float
) -> Index | None:
    """The index kept in ``cache`` when it was written for ``signature`` and has ``layout``; else None."""
    meta = atomic.read_cache_json(cache / "meta.json", {})
    if not isinstance(meta, dict) or meta.get("signature") != signature:
        return None
    try:
        frame = pd.read_parquet(cache / "index.parquet")
        malformed = pd.read_parquet(cache / "malformed.parquet")
    except Exception:  # noqa: BLE001  an unreadable cache, whatever the error, is rebuilt
        return None
    # A cache written by another version (or another program) is rebuilt, not trusted.
    if not (fits_layout(frame, layout) and fits_layout(malformed, MALFORMED_COLUMNS)):
        return None
    return Index(folder, frame, malformed, True, time.perf_counter() - start)


def saved_index(
    folder: Path, cache: Path, signature: str, frame: pd.DataFrame, malformed: pd.DataFrame, start: float
) -> Index:
    """The index just built, kept in ``cache`` for ``signature`` (a failed write only costs a rebuild)."""
    save_cache(cache / "index.parquet", lambda p: atomic.write_parquet(p, frame))
    save_cache(cache / "malformed.parquet", lambda p: atomic.write_parquet(p, malformed))
    save_cache(
        cache / "meta.json", lambda p: atomic.write_json(p, {"signature": signature, "folder": str(folder)})
    )
    return Index(folder, frame, malformed, False, time.perf_counter() - start)


def _index_row(entry: os.DirEntry) -> dict[str, object]:
    """One file's row: its labels, or the reason it is left out (a malformed or non-UTF-8 name, an
    empty or unreadable file), which is reported and never stops the rest."""
    if not is_utf8_name(entry.name):
        # Neither Parquet nor the pages can hold such a name as text: it is listed by its escapes.
        name = printable_name(entry.name)
        return {
            "path": printable_name(entry.path),
            "file": name,
            "md5": f"badname:{name}",
            "reason": NOT_UTF8_NAME,
        }
    row: dict[str, object] = {"path": entry.path, "file": entry.name}
    try:
        if entry.stat().st_size == 0:
            # Not hashed: every empty file has one hash and would read as one big duplicate group.
            return {**row, "md5": f"empty:{entry.name}", "reason": EMPTY_FILE}
        row["md5"] = md5_of(entry.path)
        labels = parse_name(entry.name)
        row.update(age=labels.age, gender=labels.gender, race=labels.race)
    except MalformedName as err:
        row["reason"] = str(err)
    except OSError as err:
        row.update(md5=f"unreadable:{entry.name}", reason=unreadable_reason(err))
    return row


def dedupe(frame: pd.DataFrame, policy: str = "drop_conflicts") -> pd.DataFrame:
    """Apply the duplicate policy.

    ``drop_conflicts`` (default): drop every copy in a group whose labels disagree (nobody knows
    which label is right) and keep one copy where they agree. ``none``: keep every file.
    """
    if policy == "none":
        return frame
    if policy != "drop_conflicts":
        raise ValueError(f"duplicate policy {policy!r}: use 'drop_conflicts' or 'none'")
    kept = frame[~frame["dup_conflict"]]
    return kept.drop_duplicates("md5", keep="first")


def save_cache(path: Path, write: Callable[[Path], object]) -> None:
    """Write a cache file; when that fails (a full disk, a read-only cache folder) say so and go on,
    since the result in hand is complete and the cache is only a time saver."""
    try:
        write(path)
    except OSError as err:
        print(
            f"agelab: cache {path} not saved ({err.strerror or err}); it will be rebuilt next time",
            file=sys.stderr,
        )
