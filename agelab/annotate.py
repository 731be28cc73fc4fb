"""Boxes and labels drawn on a photo or a video frame for the faces :mod:`agelab.predictor` found."""

from __future__ import annotations

import numpy as np

from agelab.predictor import FaceResult


def face_label(result: FaceResult) -> list[str]:
    """A box's caption in short lines, so it fits over a narrow face at a readable size:
    ``["Adult", "(25-34) 71%", "29 y | F 93%"]`` (a bin label without a range stays one line);
    ``"Adult ?"`` when the prediction is uncertain."""
    p = result.prediction
    name, _, span = p.bin_label.partition(" (")
    # "?" marks an uncertain prediction on the photo and the live view; the reasons go beside it.
    name = f"{name} ?" if p.uncertain else name
    top = [name, f"({span} {p.bin_prob:.0%}"] if span else [f"{p.bin_label} {p.bin_prob:.0%}"]
    return [*top, f"{p.age:.0f} y | {p.gender[0].upper()} {p.gender_prob:.0%}"]


FONT_THICKNESS = 1.6


def _block_size(lines: list[str], scale: float) -> tuple[int, int, int, int]:
    """A label block's ``(width, height, padding, line height)`` in pixels at font ``scale``."""
    import cv2

    thickness = max(1, round(scale * FONT_THICKNESS))
    sizes = [cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness) for line in lines]
    pad = max(2, round(4 * scale))
    line_h = max(th + base for (_, th), base in sizes) + pad
    return max(tw for (tw, _), _ in sizes) + 2 * pad, line_h * len(lines) + pad, pad, line_h


def _text_block(out: np.ndarray, lines: list[str], x: int, top: int, scale: float, color) -> None:
    """White lines on a filled ``color`` block whose top-left corner is (x, top)."""
    import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX
    thickness = max(1, round(scale * FONT_THICKNESS))
    block_w, block_h, pad, line_h = _block_size(lines, scale)
    x = max(0, min(x, out.shape[1] - block_w))
    top = max(0, min(top, out.shape[0] - block_h))
    cv2.rectangle(out, (x, top), (x + block_w, top + block_h), color, -1)
    for i, line in enumerate(lines):
        (_, th), _ = cv2.getTextSize(line, font, scale, thickness)
        baseline_y = top + pad + i * line_h + th
        cv2.putText(out, line, (x + pad, baseline_y), font, scale, (255, 255, 255), thickness, cv2.LINE_AA)


def label_scale(image_shape: tuple[int, ...]) -> float:
    """OpenCV font scale for labels that grow with the image: about 2 % of its longer side tall
    (22 px on a 1000 px photo), so they stay readable when the page shows the photo smaller."""
    return max(0.5, max(image_shape[:2]) / 1000)


def numbered_label(number: int, result: FaceResult) -> list[str]:
    """A face's caption with its number first, the number of its row in the results table."""
    lines = face_label(result)
    return [f"{number}: {lines[0]}", *lines[1:]]


def label_places(
    image_shape: tuple[int, ...], results: list[FaceResult]
) -> list[tuple[list[str], float, tuple[int, int, int, int]]]:
    """Each face's label: its lines, font scale and rectangle ``(x0, y0, x1, y1)``, numbered 1, 2, ...
    in the order given. A label sits above its face's box, else below it, else (a face that fills
    the photo) at the photo's bottom edge: never over the eyes, in the box's upper half."""
    import cv2

    height, width = image_shape[:2]
    base_scale = label_scale(image_shape)
    places = []
    for number, result in enumerate(results, start=1):
        x, y, w, h = result.box
        lines = numbered_label(number, result)
        # Shrunk to the box's width, so faces side by side keep their labels apart, but never below
        # 70 % of the image's label size (it used to shrink to an unreadable few pixels).
        widest = max(cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, base_scale, 2)[0][0] for line in lines)
        scale = max(0.7 * base_scale, min(base_scale, base_scale * (w - 8) / max(widest, 1)))
        block_w, block_h, _, _ = _block_size(lines, scale)
        if y - block_h >= 0:
            top = y - block_h
        elif y + h + block_h <= height:
            top = y + h
        else:
            top = height - block_h
        left = max(0, min(x, width - block_w))
        top = max(0, min(top, height - block_h))
        places.append((lines, scale, (left, top, left + block_w, top + block_h)))
    return places


def annotate(image: np.ndarray, results: list[FaceResult], extra: str | None = None) -> np.ndarray:
    """A copy of ``image`` with each face's box and numbered label drawn (and ``extra`` text top-left).
    Faces are numbered in the order given: callers pass them left to right
    (:func:`agelab.face_boxes.left_to_right`), the order of their table."""
    import cv2

    from agelab import palette

    out = np.ascontiguousarray(image.copy())
    base_scale = label_scale(out.shape)
    box_thickness = max(2, round(max(out.shape[:2]) / 350))
    colors = [palette.rgb(palette.GENDER.get(r.prediction.gender.capitalize(), "#4C78A8")) for r in results]
    for result, color in zip(results, colors):
        x, y, w, h = result.box
        cv2.rectangle(out, (x, y), (x + w, y + h), color, box_thickness)
    for (lines, scale, (left, top, _, _)), color in zip(label_places(out.shape, results), colors):
        _text_block(out, lines, left, top, scale, color)
    if extra:
        # White on a dark block: readable over any frame (it was green text straight on the video).
        _text_block(out, [extra], 6, 6, 0.8 * base_scale, (32, 32, 32))
    return out
