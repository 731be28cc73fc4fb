"""``python -m agelab index``: build or load the index of one data folder and report its flaws."""

from __future__ import annotations

import argparse
import json
import sys

from agelab.data import EMPTY_FILE, Index, dedupe
from agelab.data_sources import load_index
from agelab.labels_csv import LabelsError
from agelab.saved_split import load_split


def _print_progress(done: int, total: int) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    print(f"\rhashing [{'#' * filled}{'.' * (width - filled)}] {done}/{total}", end="", file=sys.stderr)
    if done == total:
        print(file=sys.stderr)


def nothing_usable(index: Index) -> str:
    """Why a folder gave no usable image, in one sentence: all-empty files are named as such, since
    "no well-named image" sent people hunting for a naming mistake."""
    reasons = index.malformed["reason"]
    if len(reasons) and (reasons == EMPTY_FILE).all():
        return (
            f"{index.folder}: {len(reasons)} image files, all empty (0 bytes); copy the images again "
            "(a download or copy that stopped early leaves such files)"
        )
    return f"no well-named UTKFace image and no usable labels.csv row in {index.folder}"


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agelab index",
        description="Index a UTKFace folder, or a folder of images beside a labels.csv, and report its flaws.",
    )
    parser.add_argument(
        "--data",
        default=None,
        help="image folder: UTKFace-named images, or images with a labels.csv (default: AGELAB_DATA or data/UTKFace)",
    )
    parser.add_argument("--rebuild", action="store_true", help="ignore the cache and rebuild")
    parser.add_argument(
        "--duplicates", default="drop_conflicts", choices=["drop_conflicts", "none"], help="duplicate policy"
    )
    args = parser.parse_args(argv)
    try:
        index = load_index(args.data, progress=_print_progress, use_cache=not args.rebuild)
    except (OSError, LabelsError) as err:
        print(f"agelab index: {err}", file=sys.stderr)
        return 1
    summary = index.summary(kept=len(dedupe(index.frame, args.duplicates)))
    load_split(index)
    print(
        f"{index.folder}: {summary['valid']} images indexed, {summary['malformed']} left out (malformed names or unreadable files), "
        f"{summary['duplicate_groups']} duplicate groups ({summary['conflicting_groups']} with conflicting "
        f"labels), {summary['kept']} kept; {'from cache' if index.cached else 'built'} in {summary['seconds']} s",
        file=sys.stderr,
    )
    for row in index.malformed.itertuples():
        kind = "unreadable" if row.reason.startswith("cannot be read") else "malformed"
        print(f"  {kind}: {row.file}: {row.reason}", file=sys.stderr)
    if index.frame.empty:
        print(f"agelab index: {nothing_usable(index)}", file=sys.stderr)
    print(json.dumps(summary))
    return 0
