"""Photos on which a prediction means little, said in words: nearly black, tiny, or with no face
found. A model still answers for them (a black frame came out "Senior 90 %"), so the pages that show
an answer (Review's tiles and face dialog, Predict's results) show these beside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Mean brightness (0-255) under which a photo is nearly black: a face under ~6 % grey has too few
# levels left for the model to read its features.
DARK_MEAN = 15.0
# A side shorter than this is upsampled several times to reach the model's input: the detail of an
# age (lines, skin) is not there.
MIN_SIDE = 32


def image_flags(image: np.ndarray, face_found: bool | None = None) -> list[str]:
    """What makes an RGB ``uint8`` photo unfit to be judged, one phrase each; empty when nothing does.

    ``face_found`` is whether the face detector found the face (False: the model was given the
    stored image placed as a crop); None when no detector ran.
    """
    flags = []
    height, width = image.shape[:2]
    brightness = float(image.mean()) if image.size else 0.0
    if brightness < DARK_MEAN:
        flags.append(f"nearly black (mean brightness {brightness:.0f} of 255)")
    if min(height, width) < MIN_SIDE:
        flags.append(f"tiny ({width} x {height} px, under {MIN_SIDE} px a side)")
    if face_found is False:
        flags.append("no face detected in it")
    return flags


def file_flags(path: str | Path, face_found: bool | None = None) -> list[str]:
    """:func:`image_flags` of an image file; a file that cannot be decoded is one flag saying why."""
    from agelab.images import ImageError, load_image

    try:
        image = load_image(path)
    except ImageError as err:
        return [str(err)]
    return image_flags(image, face_found)


def flags_sentence(flags: list[str]) -> str:
    """``"Nearly black (...) and tiny (...): the prediction may mean nothing."``; empty for none."""
    if not flags:
        return ""
    listed = flags[0] if len(flags) == 1 else ", ".join(flags[:-1]) + " and " + flags[-1]
    return f"{listed[0].upper()}{listed[1:]}: the prediction may mean nothing."
