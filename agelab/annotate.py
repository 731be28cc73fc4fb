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


def _text_block(out: np.ndarray, lines: list[str], x: int, top: int, scale: float, color) -> None:
    """White lines on a filled ``color`` block whose top-left corner is (x, top)."""
    import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX
    thickness = max(1, round(scale * 1.6))
    sizes = [cv2.getTextSize(line, font, scale, thickness) for line in lines]
    pad = max(2, round(4 * scale))
    line_h = max(th + base for (_, th), base in sizes) + pad
    block_w, block_h = max(tw for (tw, _), _ in sizes) + 2 * pad, line_h * len(lines) + pad
    x = max(0, min(x, out.shape[1] - block_w))
    top = max(0, min(top, out.shape[0] - block_h))
    cv2.rectangle(out, (x, top), (x + block_w, top + block_h), color, -1)
    for i, (line, ((_, th), _)) in enumerate(zip(lines, sizes)):
        baseline_y = top + pad + i * line_h + th
        cv2.putText(out, line, (x + pad, baseline_y), font, scale, (255, 255, 255), thickness, cv2.LINE_AA)


def label_scale(image_shape: tuple[int, ...]) -> float:
    """OpenCV font scale for labels that grow with the image: about 2 % of its longer side tall
    (22 px on a 1000 px photo), so they stay readable when the page shows the photo smaller."""
    return max(0.5, max(image_shape[:2]) / 1000)


def annotate(image: np.ndarray, results: list[FaceResult], extra: str | None = None) -> np.ndarray:
    """A copy of ``image`` with each face's box and label drawn (and ``extra`` text top-left)."""
    import cv2

    from agelab import palette

    font = cv2.FONT_HERSHEY_SIMPLEX
    out = np.ascontiguousarray(image.copy())
    base_scale = label_scale(out.shape)
    box_thickness = max(2, round(max(out.shape[:2]) / 350))
    for result in results:
        x, y, w, h = result.box
        gender = result.prediction.gender.capitalize()
        color = palette.rgb(palette.GENDER.get(gender, "#4C78A8"))
        cv2.rectangle(out, (x, y), (x + w, y + h), color, box_thickness)
        lines = face_label(result)
        # Shrunk to the box's width, so faces side by side keep their labels apart, but never below
        # 70 % of the image's label size (it used to shrink to an unreadable few pixels).
        widest = max(cv2.getTextSize(line, font, base_scale, 2)[0][0] for line in lines)
        scale = max(0.7 * base_scale, min(base_scale, base_scale * (w - 8) / max(widest, 1)))
        block_h = round(len(lines) * 30 * scale) + 8
        top = y - block_h if y - block_h > 0 else y + h
        _text_block(out, lines, x, top, scale, color)
    if extra:
        # White on a dark block: readable over any frame (it was green text straight on the video).
        _text_block(out, [extra], 6, 6, 0.8 * base_scale, (32, 32, 32))
    return out
