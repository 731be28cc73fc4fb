"""What the boxes found in a photo say: whether faces were likely missed, whether two detectors found
the same face, whether the faces fill the frame (so the full-range detector is not needed), and the
order faces are numbered in."""

from __future__ import annotations

Box = tuple[float, float, float, float]

# A photo at least this large (its longer side, px) can hold faces too small for the detector, which
# sees the whole frame at its own input size (128 px short range, 192 full range): in a 2400 px photo
# of 30 faces 120 px wide, the full-range model finds 2 and the short-range none.
SMALL_FACES_PHOTO = 1000
# At most this many faces found, all small, in such a photo: the rest were likely missed.
FEW_FACES = 3
# Found faces narrower than this share of the photo's longer side are "small": where only such faces
# (or none) were found, more of them were likely missed.
SMALL_FACE_SHARE = 0.125


def missed_faces_hint(width: int, height: int, boxes: list[tuple[int, int, int, int]]) -> str | None:
    """A hint for a large photo in which a few faces at most, and no large one, were found: it may
    hold faces too small for the detector. None when the result needs no hint."""
    longest = max(width, height)
    if longest < SMALL_FACES_PHOTO or len(boxes) > FEW_FACES:
        return None
    if any(max(w, h) >= SMALL_FACE_SHARE * longest for _, _, w, h in boxes):
        return None  # a face that fills the photo (a portrait): nothing was missed
    found = "no face" if not boxes else f"{len(boxes)} small face" + ("s" if len(boxes) > 1 else "")
    return (
        f"found {found} in a {width}x{height} photo; if it holds more faces, they are too small for the"
        " detector, which sees the whole photo at 128-192 px: crop the photo around them (each face a"
        " tenth of the crop or more) and predict the crops"
    )


# "auto" skips the full-range detector when the short-range one found faces and each is at least
# this share of the photo's longer side (see bench/groups.py for the measurement).
CLOSE_FACE_SHARE = 0.2
# A full-range face overlapping a short-range one by more than this (intersection over union) is the
# same face; MediaPipe's own suppression uses 0.3.
MERGE_IOU = 0.3


def fills_the_frame(found: list, shape: tuple[int, ...]) -> bool:
    """Whether faces were found and each fills a good part of a photo of ``shape``: a selfie, a
    portrait or a webcam close-up, where the short-range detector alone is enough. ``found`` holds
    :meth:`agelab.faces.FaceDetector.locate`'s ``(box, score, keypoints)`` items."""
    longest = max(shape[:2])
    return bool(found) and all(max(box[2], box[3]) >= CLOSE_FACE_SHARE * longest for box, _, _ in found)


def box_overlap(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x, y, width, height)`` boxes."""
    w = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = w * h
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def left_to_right(boxes: list[Box]) -> list[int]:
    """The indices of ``boxes`` in reading order for numbering faces: by the box's left edge, then
    its top (a face's number on the photo and its row in the table)."""
    return sorted(range(len(boxes)), key=lambda i: (boxes[i][0], boxes[i][1]))
