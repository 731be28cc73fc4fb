"""The one face crop: what the model sees, in training and in serving.

A face found by the detector is aligned by its keypoints to a fixed template, so that a face in a
group photo, a webcam frame or a studio portrait reaches the model framed, scaled and levelled as the
training faces were. Training runs the same detector over the UTKFace images and trains on these
crops (``agelab.crop_cache``), so both paths share this module's pixels exactly.

Two constants were measured on UTKFace (docs/architecture.md, "The face crop"): the keypoint
:data:`TEMPLATE` an aligned crop is framed by, and the :data:`DEFAULT_MARGIN` of the box crop
(:func:`crop_face`) that a detector model without keypoints gets.
"""

from __future__ import annotations

import numpy as np

# The aligned crop's side in pixels: UTKFace's own size, so its framing carries over.
CROP_SIZE = 200
# Right eye, left eye, nose tip, mouth centre (MediaPipe's first four face keypoints; "right" is the
# person's right, on the image's left), in a CROP_SIZE crop.
TEMPLATE = np.array([[61.0, 61.0], [139.0, 61.0], [100.0, 107.0], [100.0, 145.0]], np.float64)
# The ears (keypoints 4 and 5) are often hidden or misplaced, so only these four define the pose.
ALIGN_POINTS = 4
# The box crop's margin, a fraction of the box's side on each side (measured: docs/architecture.md).
DEFAULT_MARGIN = 0.04


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 rotation + uniform scale + shift that best maps ``source`` points onto ``target``
    (least squares, no reflection: Umeyama 1991 in the plane).

    In the plane, rotation times scale is one complex number ``a``, and the least-squares ``a`` for
    centred points is ``sum(conj(s) * t) / sum(|s|^2)``: the same transform as Umeyama's SVD. Done in
    plain Python on the handful of keypoints, it takes a tenth of the SVD's time, and it runs for
    every face of every live frame."""
    src = [complex(x, y) for x, y in np.asarray(source, np.float64).tolist()]
    dst = [complex(x, y) for x, y in np.asarray(target, np.float64).tolist()]
    src_mean, dst_mean = sum(src) / len(src), sum(dst) / len(dst)
    s = [z - src_mean for z in src]
    t = [z - dst_mean for z in dst]
    a = sum(p.conjugate() * q for p, q in zip(s, t)) / max(sum(abs(p) ** 2 for p in s), 1e-12)
    shift = dst_mean - a * src_mean
    return np.array([[a.real, -a.imag, shift.real], [a.imag, a.real, shift.imag]])


def template_keypoints(width: int, height: int) -> np.ndarray:
    """The template placed on a whole image: for an image that is already a face crop (a UTKFace
    file on which the detector found nothing), aligning to these keeps its own framing."""
    scale = np.array([width, height], np.float64) / CROP_SIZE
    return TEMPLATE * scale


def align_face(image: np.ndarray, keypoints: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """The ``size`` x ``size`` RGB crop of the face whose keypoints (at least the first four, in
    ``image``'s pixels) are given, rotated and scaled onto :data:`TEMPLATE`; outside the image is black.
    """
    points = np.asarray(keypoints, np.float64)[:ALIGN_POINTS]
    matrix = similarity_transform(points, TEMPLATE * (size / CROP_SIZE))
    return resample(image, matrix, (size, size))


def resample(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The ``size`` (width, height) image that the 2x3 ``matrix`` (``image`` to output, no shear)
    maps ``image`` onto, black outside it, made so that the output does not depend on how many pixels
    ``image`` has: the same photo at 1x and at 12x gives the same output.

    Coordinates are continuous: pixel ``(i, j)`` covers ``[i, i + 1) x [j, j + 1)``, as the face
    detector's keypoints are. (``warpAffine`` puts pixel centres at whole numbers; mapped as they
    are, the output moves by up to half an output pixel with the scale.)

    Shrinking, the region the output needs is first averaged down by area (``cv2.resize``,
    INTER_AREA) to the output's scale, so each output pixel is the mean of the source pixels it
    covers; a warp alone samples one point per output pixel and aliases (``warpAffine`` has no area
    mode: it takes INTER_AREA as bilinear). What is left is a warp at about unit scale, bicubic like
    every enlargement: bilinear blurs by up to half a pixel depending on the sub-pixel phase, and
    the phase changes with the source's resolution.
    """
    import cv2

    matrix = np.asarray(matrix, np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    width, height = size
    source = image
    if scale < 1.0:
        inverse = cv2.invertAffineTransform(matrix)
        corners = np.array([[0, 0, 1], [width, 0, 1], [0, height, 1], [width, height, 1]], np.float64)
        mapped = corners @ inverse.T
        # The needed region, wider by the bicubic kernel, clipped to the image: outside it the
        # warp's border is black anyway, and a 9000 px photo is never copied whole.
        margin = 3 / scale
        x0, y0 = (max(0, int(np.floor(v - margin))) for v in mapped.min(0))
        x1 = min(image.shape[1], int(np.ceil(mapped[:, 0].max() + margin)))
        y1 = min(image.shape[0], int(np.ceil(mapped[:, 1].max() + margin)))
        if x1 <= x0 or y1 <= y0:
            return np.zeros((height, width, 3), np.uint8)
        small = cv2.resize(
            np.ascontiguousarray(image[y0:y1, x0:x1]),
            (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))),
            interpolation=cv2.INTER_AREA,
        )
        # Continuous region coordinates are (x - x0) * shrink per axis (exact for the rounded sizes).
        shrink = np.array([small.shape[1] / (x1 - x0), small.shape[0] / (y1 - y0)])
        offset = matrix[:, :2] @ np.array([x0, y0], np.float64) + matrix[:, 2]
        matrix = np.hstack([matrix[:, :2] / shrink[None, :], offset[:, None]])
        source = small
    # Continuous to pixel-centre coordinates: u + 1/2 = A (x + 1/2) + b.
    centred = np.hstack([matrix[:, :2], (matrix[:, :2] @ np.full(2, 0.5) + matrix[:, 2] - 0.5)[:, None]])
    return cv2.warpAffine(
        np.ascontiguousarray(source),
        centred,
        (width, height),
        flags=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )


def _padded_region(image: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """``image[y0:y1, x0:x1]`` with the parts outside the image black."""
    height, width = image.shape[:2]
    out = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return out


def crop_face(
    image: np.ndarray, box: tuple[int, int, int, int], margin: float = DEFAULT_MARGIN
) -> np.ndarray:
    """A square crop around ``box`` (``x, y, width, height``) grown by ``margin`` of its side on each
    side: the crop for a face without keypoints.

    Parts outside the image are padded black, as UTKFace's aligned crops are.
    """
    x, y, w, h = box
    side = max(1, int(round(max(w, h) * (1 + 2 * margin))))
    cx, cy = x + w / 2, y + h / 2
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    return _padded_region(image, left, top, left + side, top + side)


def clip_box(box: tuple[float, float, float, float], width: int, height: int) -> tuple[int, int, int, int]:
    """A detected box (``x, y, width, height``, unclipped) as the whole pixels inside a ``width`` x
    ``height`` image: the box a face is reported with."""
    x, y, w, h = box
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(float(width), x + w), min(float(height), y + h)
    return (int(round(x0)), int(round(y0)), max(0, int(round(x1 - x0))), max(0, int(round(y1 - y0))))


def model_input(crop: np.ndarray, size: int) -> np.ndarray:
    """A crop resized to the model's ``size`` x ``size`` input (uint8 RGB): area averaging when
    shrinking, bilinear when growing. Every prediction and every training image passes through here."""
    import cv2

    crop = np.asarray(crop)
    if crop.ndim != 3 or crop.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB array, got shape {crop.shape}")
    if crop.shape[0] == size and crop.shape[1] == size:
        return np.ascontiguousarray(crop, dtype=np.uint8)
    shrink = crop.shape[0] > size or crop.shape[1] > size
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def labelled_crop(image: np.ndarray, keypoints: np.ndarray | None, image_size: int) -> np.ndarray:
    """The model input for a labelled image (one person): its face aligned by the detector's
    ``keypoints``; without them (the detector found no face) the image is taken as an aligned face crop
    already (UTKFace's are) and placed on the template. Training, ``evaluate`` and labelled photos all
    crop here."""
    if keypoints is None:
        keypoints = template_keypoints(image.shape[1], image.shape[0])
    return model_input(align_face(image, keypoints), image_size)


def roll_degrees(keypoints: np.ndarray) -> float:
    """The head's roll, from the eye line (0 when the eyes are level)."""
    right, left = np.asarray(keypoints, np.float64)[:2]
    dx, dy = left - right
    return float(np.degrees(np.arctan2(dy, dx)))


def alignment_residual(keypoints: np.ndarray) -> float:
    """How far the keypoints are from a template face after the best similarity fit, as a fraction of
    the template's eye distance: large for a profile, a wrong detection or a distorted face."""
    points = np.asarray(keypoints, np.float64)[:ALIGN_POINTS]
    matrix = similarity_transform(points, TEMPLATE)
    mapped = points @ matrix[:, :2].T + matrix[:, 2]
    eye_distance = float(np.linalg.norm(TEMPLATE[1] - TEMPLATE[0]))
    return float(np.sqrt(((mapped - TEMPLATE) ** 2).sum(1).mean()) / eye_distance)
