"""Face detection with MediaPipe's face detector: boxes, scores and keypoints in a photo's pixels, and
each face's aligned crop (:mod:`agelab.crop`). Images are decoded by :mod:`agelab.images`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agelab import settings
from agelab.assets import AssetError, download_face_model
from agelab.blazeface import INPUT_SIZE, BlazeFace, UnsupportedDetectorModel
from agelab.crop import ALIGN_POINTS, DEFAULT_MARGIN, align_face, clip_box, crop_face, resample
from agelab.face_boxes import MERGE_IOU, box_overlap, fills_the_frame
from agelab.native_log import SPARSITY_NOTICE, dropped_native_lines
from agelab.paths import mirror_dir, models_dir

# Faces that fill the frame (as in UTKFace) are often missed. When a first pass finds nothing, a second
# one runs with a black border of this fraction of the shorter side. On 1,000 real UTKFace images the
# short-range model missed 13 without a border and none with 0.25. The border is not always on because
# it shrinks the faces of a wide scene.
DEFAULT_BORDER = 0.25
# Faces narrower than this fraction of the frame get their keypoints measured again on a close-up of
# REFINE_CONTEXT times their box, at the detector's input size (see FaceDetector._refine).
REFINE_BELOW = 0.5
REFINE_CONTEXT = 2.0
# "litert" runs the short-range model directly (agelab.blazeface), "mediapipe" through MediaPipe
# Tasks' own graph (the reference it is tested against, and the only runner of the full-range model).
RUNTIMES = ("litert", "mediapipe")
# The detector is created with a low floor; callers filter by their own min_score, so one detector
# serves every position of a confidence slider.
DETECTOR_FLOOR = 0.2
# "auto" runs the short-range model and, unless it found only faces that fill a good part of the
# frame (a selfie, a portrait, a webcam close-up), the full-range model too, merging the two.
KINDS = ("auto", "short", "full")
MODEL_FILES = {
    "short": "face_detection_short_range.tflite",
    "full": "face_detection_full_range_sparse.tflite",
}
# Each model's square input, in pixels: the whole frame is shrunk onto it by area averaging.
INPUT_SIDES = {"short": INPUT_SIZE, "full": 192}


class DetectorModelError(RuntimeError):
    """No face detector model could be found or fetched."""


@dataclass
class Face:
    """One detected face. ``box`` is ``(x, y, width, height)`` and ``keypoints`` (6 x 2: right eye,
    left eye, nose tip, mouth centre, right ear, left ear) are in the original image's pixels;
    ``crop`` is the aligned crop the model sees (:func:`agelab.crop.align_face`)."""

    box: tuple[int, int, int, int]
    score: float
    crop: np.ndarray = field(repr=False)
    keypoints: np.ndarray | None = field(default=None, repr=False)


# A located face: the box (unclipped, original pixels), the score, and the keypoints.
Located = tuple[tuple[float, float, float, float], float, np.ndarray]


# --------------------------------------------------------------------------- detector models


def detector_model_path(kind: str = "short", path: str | Path | None = None, download: bool = True) -> Path:
    """The face detector's model file: ``path``, else ``AGELAB_FACE_MODEL``, else the models folder
    that setup fills (and the ``AGELAB_MIRROR`` copy), else a download of MediaPipe's model (the one
    ``setup`` fetches, sha256-checked).

    ``AGELAB_FACE_MODEL`` may name a ``.tflite`` file (used for every kind) or a folder holding
    ``face_detection_short_range.tflite`` / ``face_detection_full_range_sparse.tflite``.
    """
    if kind not in MODEL_FILES:
        raise ValueError(f"unknown detector {kind!r}: choose from {', '.join(MODEL_FILES)}")
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise DetectorModelError(f"face detector model {path} does not exist")
        return path
    filename = MODEL_FILES[kind]
    tried: list[str] = []
    env = settings.get("AGELAB_FACE_MODEL")
    candidates: list[Path] = []
    if env:
        chosen = Path(env) / filename if Path(env).is_dir() else Path(env)
        if not chosen.is_file():
            # Set on purpose: another model found elsewhere would be used without a word.
            where = f"the folder {env} has no {filename}" if Path(env).is_dir() else f"{env} does not exist"
            raise DetectorModelError(
                f"AGELAB_FACE_MODEL names a face detector model that is not there ({where}); set it to a "
                f".tflite file or to a folder holding {filename}, or unset it to use {models_dir() / filename}"
            )
        return chosen
    candidates.append(models_dir() / filename)
    mirror = mirror_dir()
    if mirror is not None:
        candidates.append(mirror / "mediapipe" / filename)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
        tried.append(str(candidate))
    if download:
        try:
            return download_face_model(filename)
        except (OSError, AssetError) as exc:
            tried.append(f"a download of {filename} ({exc})")
    raise DetectorModelError(
        f"no {kind}-range face detector model found (tried: {'; '.join(tried)}). Run "
        "`python -m agelab setup`, or set AGELAB_FACE_MODEL to a .tflite file or to a folder holding "
        f"{filename}, or copy it into {models_dir()}."
    )


def _mediapipe() -> Any:
    from agelab.import_order import load_srtp_first

    load_srtp_first()
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    return mp, vision, BaseOptions


# --------------------------------------------------------------------------- the detector

# MediaPipe's own finaliser fails noisily when it runs during interpreter shutdown, so detectors
# still open at exit are closed first.
_OPEN_DETECTORS: weakref.WeakSet[FaceDetector] = weakref.WeakSet()


@atexit.register
def _close_open_detectors() -> None:
    for detector in list(_OPEN_DETECTORS):
        detector.close()


class FaceDetector:
    """MediaPipe's face detector, returning boxes, scores and crops.

    ``kind`` is "short" (faces near the camera), "full" (faces up to a few metres away) or "auto"
    (short range, and full range as well unless every face found fills a good part of the frame).
    The short-range model is run by LiteRT with MediaPipe's pre- and post-processing
    (:mod:`agelab.blazeface`) unless ``runtime="mediapipe"``; other models by MediaPipe Tasks.

    ``mode="image"`` for photos; ``mode="video"`` for a stream of frames, which must then be passed
    in order (timestamps are made increasing if the caller's are not). Not thread-safe by MediaPipe's
    design, so calls are serialised with a lock.
    """

    def __init__(
        self,
        kind: str = "auto",
        model_path: str | Path | None = None,
        mode: str = "image",
        margin: float = DEFAULT_MARGIN,
        border: float = DEFAULT_BORDER,
        floor: float = DETECTOR_FLOOR,
        runtime: str = "litert",
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown detector {kind!r}: choose from {', '.join(KINDS)}")
        if mode not in {"image", "video"}:
            raise ValueError(f"detector mode {mode!r}: use 'image' or 'video'")
        if runtime not in RUNTIMES:
            raise ValueError(f"detector runtime {runtime!r}: use one of {', '.join(RUNTIMES)}")
        self.requested_runtime = runtime
        self.kind, self.mode, self.margin, self.border = kind, mode, margin, border
        self.model_kind = "full" if kind == "full" else "short"
        self.input_side = INPUT_SIDES[self.model_kind]
        self.model_path = detector_model_path(self.model_kind, model_path)
        self.floor = floor
        self._lock = threading.Lock()
        self._far: FaceDetector | None = None
        self._blazeface = self._direct_model()
        if self._blazeface is None:
            mp, vision, base_options = _mediapipe()
            self._mp = mp
            running_mode = vision.RunningMode.VIDEO if mode == "video" else vision.RunningMode.IMAGE
            options = vision.FaceDetectorOptions(
                base_options=base_options(model_asset_path=str(self.model_path)),
                running_mode=running_mode,
                min_detection_confidence=floor,
            )
            try:
                with dropped_native_lines(SPARSITY_NOTICE):  # a notice per tensor of the sparse model
                    self._detector = vision.FaceDetector.create_from_options(options)
            except (RuntimeError, ValueError) as exc:  # MediaPipe's message does not name the file
                raise DetectorModelError(
                    f"the face detector model {self.model_path} cannot be loaded ({str(exc).splitlines()[0][:120]});"
                    " replace it with MediaPipe's model (`python -m agelab setup`)"
                ) from None
        self._last_ts = -1
        _OPEN_DETECTORS.add(self)

    def _direct_model(self) -> BlazeFace | None:
        """The short-range model run by LiteRT without MediaPipe's task graph (same faces, a third of
        the time: :mod:`agelab.blazeface`); None for other models, which the task runs."""
        if self.model_kind != "short" or self.requested_runtime != "litert":
            return None
        try:
            return BlazeFace(self.model_path, threads=min(2, os.cpu_count() or 1))
        except (UnsupportedDetectorModel, ImportError, ValueError, RuntimeError):
            return None

    def _far_detector(self) -> FaceDetector:
        """The full-range detector "auto" adds for faces far from the camera, loaded when first needed."""
        with self._lock:
            if self._far is None:
                self._far = FaceDetector("full", mode=self.mode, border=0.0, floor=self.floor)
            return self._far

    @property
    def runtime(self) -> str:
        """What runs the detector model, for descriptions."""
        own = "LiteRT" if self._blazeface is not None else "MediaPipe Tasks"
        return f"{own} (full range: MediaPipe Tasks)" if self.kind == "auto" else own

    def locate(self, image: np.ndarray, min_score: float, timestamp_ms: int | None) -> list[Located]:
        """Boxes and keypoints in ``image``'s pixels, not clipped to it (a face at the edge reaches
        past it)."""
        found = self._detect_frame(image, 0.0, min_score, timestamp_ms)
        if not found and self.border > 0:
            # A face that fills the frame is often missed; a black border lets the detector see it whole.
            pad = self.border * min(image.shape[:2])
            found = self._detect_frame(
                image, pad, min_score, None if timestamp_ms is None else timestamp_ms + 1
            )
        if self.kind == "auto" and not fills_the_frame(found, image.shape):
            far = self._far_detector()._detect_frame(image, 0.0, min_score, timestamp_ms)
            found += [
                item for item in far if all(box_overlap(item[0], mine[0]) < MERGE_IOU for mine in found)
            ]
        found = [self._refine(image, item) for item in found]
        found.sort(key=lambda item: -item[1])
        return found

    def _detect_frame(
        self, image: np.ndarray, pad: float, min_score: float, timestamp_ms: int | None
    ) -> list[Located]:
        """Faces in the whole frame, on a black border of ``pad`` pixels, letterboxed onto the model's
        square input by area averaging (:func:`agelab.crop.resample`), so that the detector sees the
        same input, and gives the same boxes, for the photo at any resolution."""
        height, width = image.shape[:2]
        side = max(height, width) + 2 * pad
        zoom = self.input_side / side
        left, top = width / 2 - side / 2, height / 2 - side / 2
        to_input = np.array([[zoom, 0, -left * zoom], [0, zoom, -top * zoom]])
        pixels = resample(image, to_input, (self.input_side, self.input_side))
        return self._detect_once(pixels, zoom, left, top, min_score, timestamp_ms)

    def _refine(self, image: np.ndarray, item: Located) -> Located:
        """Keypoints measured again on a close-up of the face, when it is small in the frame.

        The detector sees the whole frame at 128 px (short range), so a face a fifth of the frame
        wide gets keypoints from a ~25 px face, off by several pixels: enough to tilt the aligned
        crop. Training faces fill their frame; the close-up gives scene faces the same precision.
        """
        (x, y, w, h), score, keypoints = item
        side = max(w, h)
        if side <= 0 or side / max(image.shape[:2]) >= REFINE_BELOW or len(keypoints) < ALIGN_POINTS:
            return item
        again = self._close_up(image, item, 0.0)
        if again is None or len(again[2]) < ALIGN_POINTS:
            return item
        return (x, y, w, h), score, again[2]

    def follow(self, image: np.ndarray, item: Located, min_score: float) -> Located | None:
        """The face of ``item`` (found in an earlier video frame) found again in ``image`` by the
        close-up around its old box alone: box, score and keypoints, or None when it is gone. What
        the live webcam runs between whole-frame detections; the close-up is the one ``locate``
        takes for small faces anyway."""
        return self._close_up(image, item, min_score)

    def _close_up(self, image: np.ndarray, item: Located, min_score: float) -> Located | None:
        """The detection nearest the centre of a close-up around ``item``'s box (REFINE_CONTEXT times
        its side at the model's input size, black outside the image), in ``image``'s pixels. The
        close-up is resampled from the original pixels (:func:`agelab.crop.resample`), so a face
        gives the same close-up, and the same keypoints, at any resolution of the photo."""
        (x, y, w, h), _, _ = item
        side = max(w, h)
        if side <= 0:
            return None
        region_side = side * REFINE_CONTEXT
        left, top = x + w / 2 - region_side / 2, y + h / 2 - region_side / 2
        zoom = self.input_side / region_side
        to_region = np.array([[zoom, 0, -left * zoom], [0, zoom, -top * zoom]])
        close_up = resample(image, to_region, (self.input_side, self.input_side))
        found = self._detect_once(close_up, 1.0, 0.0, 0.0, min_score, None)
        if not found:
            return None
        centre = self.input_side / 2
        (bx, by, bw, bh), score, points = min(
            found, key=lambda a: np.hypot(a[0][0] + a[0][2] / 2 - centre, a[0][1] + a[0][3] / 2 - centre)
        )
        box = (bx / zoom + left, by / zoom + top, bw / zoom, bh / zoom)
        return box, score, points / zoom + np.array([left, top])

    def _detect_once(
        self,
        pixels: np.ndarray,
        zoom: float,
        left: float,
        top: float,
        min_score: float,
        timestamp_ms: int | None,
    ) -> list[Located]:
        """Faces in ``pixels``, mapped back to the image that ``pixels`` shows at ``zoom`` from
        (``left``, ``top``): image coordinates are ``left + u / zoom``."""
        if self._blazeface is not None:
            # The task applies its floor before suppression and callers' min_score after: kept here.
            return [
                ((x / zoom + left, y / zoom + top, w / zoom, h / zoom), score, points / zoom + [left, top])
                for (x, y, w, h), score, points in self._blazeface.detect(pixels, self.floor)
                if score >= min_score
            ]
        frame = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(pixels))
        with self._lock:
            if self.mode == "video":
                ts = int(time.monotonic() * 1000) if timestamp_ms is None else int(timestamp_ms)
                ts = max(ts, self._last_ts + 1)
                self._last_ts = ts
                result = self._detector.detect_for_video(frame, ts)
            else:
                result = self._detector.detect(frame)
        found = []
        height, width = pixels.shape[:2]
        for det in result.detections:
            score = float(det.categories[0].score) if det.categories else 0.0
            if score < min_score:
                continue
            b = det.bounding_box
            raw = (b.origin_x / zoom + left, b.origin_y / zoom + top, b.width / zoom, b.height / zoom)
            keypoints = np.array(
                [(k.x * width / zoom + left, k.y * height / zoom + top) for k in det.keypoints or []],
                np.float64,
            ).reshape(-1, 2)
            found.append((raw, score, keypoints))
        return found

    def detect(
        self, image: np.ndarray, min_score: float = 0.5, timestamp_ms: int | None = None
    ) -> list[Face]:
        """Every face scoring at least ``min_score``, best first, with its crop."""
        return self.crop_all(image, self.locate(image, min_score, timestamp_ms))

    def crop_all(self, image: np.ndarray, located: list[Located]) -> list[Face]:
        """Faces for :meth:`locate`'s boxes, each aligned by its keypoints (:mod:`agelab.crop`); a
        face at the border is padded black rather than shifted. Without keypoints (a detector model
        that gives none) the crop is the box grown by ``margin``."""
        height, width = image.shape[:2]
        faces = []
        for raw, score, keypoints in located:
            box = clip_box(raw, width, height)
            if box[2] < 2 or box[3] < 2:
                continue
            if len(keypoints) >= ALIGN_POINTS:
                crop = align_face(image, keypoints)
            else:
                crop = crop_face(image, tuple(int(round(v)) for v in raw), self.margin)
            faces.append(Face(box, score, crop, keypoints))
        return faces

    def close(self) -> None:
        if self._far is not None:
            self._far.close()
        if self._blazeface is not None:
            return
        with self._lock, contextlib.suppress(Exception):
            self._detector.close()

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
