"""``python -m agelab setup``: make the UTKFace images, Keras weights and face detector available."""

from __future__ import annotations

import argparse
import sys

from agelab.assets import STEPS, AssetError, mirror_folder


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agelab setup",
        description="Make the UTKFace images, Keras weights and face detector available.",
    )
    parser.add_argument(
        "--mirror",
        default=None,
        help="folder laid out like ../shared, or its s3:// or gs:// prefix (AGELAB_MIRROR)",
    )
    args = parser.parse_args(argv)
    try:
        mirror = mirror_folder(args.mirror)
    except AssetError as err:
        print(f"agelab setup: {err}", file=sys.stderr)
        return 1
    failed = False
    for step in STEPS:
        try:
            result = step(mirror)
        except AssetError as err:
            print(f"agelab setup: {err}", file=sys.stderr)
            failed = True
        else:
            print(f"{result.name}: {result.location} ({result.how})", file=sys.stderr)
    return 1 if failed else 0
