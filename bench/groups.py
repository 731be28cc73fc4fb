"""Faces found in group pictures, by detector: short range, full range and the automatic choice.

    .venv/bin/python bench/groups.py [--pictures 20] [--seed 0] [--singles 100]

No group photos are available offline, so each group picture is composed of 2-6 different real
photos from aaf-dev (loosely cropped, with their own background), scaled so that each face is 40-150
px wide and placed side by side in one or two rows (seeded). A placed face is where the short-range
detector finds it on its own photo, scaled and moved with it; it counts as found when a detected box
overlaps it (intersection over union >= 0.3). Single faces are checked too: the first ``--singles``
aaf-dev photos by name and scikit-image's astronaut, where the automatic choice must not lose a face
(and should not need the full-range model). Prints one markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agelab.face_boxes import box_overlap  # noqa: E402
from agelab.faces import KINDS, FaceDetector  # noqa: E402
from agelab.images import load_image  # noqa: E402
from agelab.paths import mirror_dir  # noqa: E402

FACES = (2, 6)
FACE_SIDES = (40, 150)
GAP = (8, 40)
BACKGROUND = (118, 118, 118)
FOUND_IOU = 0.3


def aaf_dev_photos() -> list[Path]:
    """aaf-dev's photos, sorted by name (``AGELAB_MIRROR``/data/aaf-dev)."""
    mirror = mirror_dir()
    folder = (mirror or Path(__file__).resolve().parent.parent.parent / "shared") / "data" / "aaf-dev"
    photos = sorted(folder.glob("*.jpg"))
    if not photos:
        raise SystemExit(f"no aaf-dev photos in {folder}: set AGELAB_MIRROR to the data mirror")
    return photos


def own_face(image: np.ndarray, detector: FaceDetector) -> tuple[float, float, float, float] | None:
    """The largest face the short-range detector finds in a one-person photo, or None."""
    found = detector.locate(image, 0.5, None)
    return max((box for box, _, _ in found), key=lambda b: b[2] * b[3], default=None)


def compose_group(
    photos: list[tuple[np.ndarray, tuple[float, float, float, float]]], rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[float, float, float, float]]]:
    """A group picture of ``photos`` (each with its face's box), each scaled so the face is 40-150 px
    wide, side by side in one row (up to 3) or two; and where each face is in it, left to right."""
    import cv2

    tiles, faces = [], []
    for image, (x, y, w, h) in photos:
        scale = rng.uniform(*FACE_SIDES) / max(w, h)
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        tiles.append(cv2.resize(image, None, fx=scale, fy=scale, interpolation=interpolation))
        faces.append((x * scale, y * scale, w * scale, h * scale))
    rows = (
        [list(range(len(tiles)))]
        if len(tiles) <= 3
        else [list(range(len(tiles) // 2)), list(range(len(tiles) // 2, len(tiles)))]
    )
    placements, row_top, width = {}, 0, 0
    for row in rows:
        left = int(rng.integers(*GAP))
        height = 0
        for i in row:
            drop = int(rng.integers(0, GAP[1]))
            placements[i] = (left, row_top + drop)
            left += tiles[i].shape[1] + int(rng.integers(*GAP))
            height = max(height, drop + tiles[i].shape[0])
        width = max(width, left)
        row_top += height + int(rng.integers(*GAP))
    picture = np.empty((row_top, width, 3), np.uint8)
    picture[:] = BACKGROUND
    placed = []
    for i, tile in enumerate(tiles):
        left, top = placements[i]
        picture[top : top + tile.shape[0], left : left + tile.shape[1]] = tile
        x, y, w, h = faces[i]
        placed.append((x + left, y + top, w, h))
    return picture, sorted(placed)


def group_pictures(count: int, seed: int) -> list[tuple[np.ndarray, list[tuple[float, float, float, float]]]]:
    """``count`` seeded group pictures of real aaf-dev photos and their faces' boxes."""
    rng = np.random.default_rng(seed)
    photos = aaf_dev_photos()
    pictures = []
    with FaceDetector("short") as short:
        while len(pictures) < count:
            chosen = rng.choice(len(photos), size=int(rng.integers(FACES[0], FACES[1] + 1)), replace=False)
            members = []
            for index in chosen:
                image = load_image(photos[index])
                if (box := own_face(image, short)) is not None:
                    members.append((image, box))
            if len(members) >= FACES[0]:
                pictures.append(compose_group(members, rng))
    return pictures


def matched(found: list[tuple[int, int, int, int]], placed: list) -> tuple[int, int]:
    """(placed faces that a detected box overlaps, detected boxes that overlap no placed face)."""
    hits = sum(any(box_overlap(p, f) >= FOUND_IOU for f in found) for p in placed)
    extra = sum(all(box_overlap(p, f) < FOUND_IOU for p in placed) for f in found)
    return hits, extra


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pictures", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--singles", type=int, default=100, help="single-face aaf-dev photos (first by name)")
    args = parser.parse_args()
    import skimage.data

    pictures = group_pictures(args.pictures, args.seed)
    singles = [load_image(p) for p in aaf_dev_photos()[: args.singles]] + [skimage.data.astronaut()]
    placed_total = sum(len(placed) for _, placed in pictures)
    print(
        f"{len(pictures)} group pictures (seed {args.seed}) of {placed_total} real faces, {FACE_SIDES} px; "
    )
    print(f"{len(singles)} single-face photos ({args.singles} aaf-dev + the astronaut)")
    print()
    print(
        "| detector | group faces found | all found (pictures) | extra boxes | single faces found | full range run (single photos) |"
    )
    print("|---|---|---|---|---|---|")
    for kind in KINDS:
        with FaceDetector(kind) as detector:
            hits = extra = whole = 0
            for picture, placed in pictures:
                found = [f.box for f in detector.detect(picture)]
                got, more = matched(found, placed)
                hits, extra, whole = hits + got, extra + more, whole + (got == len(placed))
            single_found = far_runs = 0
            for image in singles:
                located = detector.locate(image, 0.5, None)
                single_found += len(located) >= 1
                if kind == "auto":
                    from agelab.face_boxes import fills_the_frame

                    far_runs += not fills_the_frame(located, image.shape)
            far = {"short": "never", "full": "always"}.get(kind, f"{far_runs} of {len(singles)}")
            print(
                f"| {kind} | {hits}/{placed_total} ({100 * hits / placed_total:.0f} %) | {whole}/{len(pictures)} "
                f"| {extra} | {single_found}/{len(singles)} | {far} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
