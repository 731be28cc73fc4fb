"""Faces followed across the frames of a video: the live webcam's path.

A photo's faces are found by the whole-frame detector, each re-measured on a close-up
(:meth:`agelab.faces.FaceDetector.locate`), and predicted from two views, the image and its mirror
(the shipped model averages them). A video needs the same answers at the camera's rate, so
:class:`FaceTracker` spreads that work over the frames:

- the whole frame is searched every ``redetect_every`` frames, and whenever no face is followed;
  in between, each face is found again by the close-up around where it was
  (:meth:`~agelab.faces.FaceDetector.follow`), which ``locate`` runs for a small face anyway;
- a followed face gets one view a frame, the image and its mirror in turn, and its prediction is the
  mean of that view and the other one from the frame before: the photo's two-view prediction, one
  frame late. A face seen for the first time gets both views at once.

A new face is picked up within ``redetect_every`` frames (0.2 s at 30 fps); a face the close-up no
longer finds is dropped at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agelab.faces import FaceDetector, Located
from agelab.predictor import FaceResult, Predictor
from agelab.uncertainty import framing_reasons

# Whole-frame searches: one frame in six, 5 per second at 30 fps.
REDETECT_EVERY = 6
# A detection continues a track when their boxes overlap by this much (intersection over union).
MATCH_IOU = 0.3
# Two followed faces overlapping this much are one face, found twice.
SAME_FACE_IOU = 0.5


@dataclass
class Track:
    """A face being followed: where it was last found, and its last single view's raw outputs."""

    located: Located
    view: dict[str, np.ndarray] | None = None
    mirrored: bool = False


def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two ``(x, y, width, height)`` boxes."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    inter_w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    inter_h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = inter_w * inter_h
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def live_note(predictor: Predictor, redetect_every: int = REDETECT_EVERY) -> str:
    """What the live webcam does with each frame, in words, for the page."""
    views = (
        "each face gets one view a frame, the image and its mirror in turn, averaged with the other view "
        "of the frame before"
        if predictor.single_views
        else "each face gets both views, the image and its mirror, every frame"
    )
    return (
        f"Faces are followed from frame to frame: the whole frame is searched one frame in "
        f"{redetect_every}, each face is found again by a close-up in between, and {views}."
    )


class FaceTracker:
    """Faces and predictions for consecutive frames of one video. Not thread-safe: one per stream,
    fed its frames in order."""

    def __init__(
        self,
        detector: FaceDetector,
        predictor: Predictor,
        min_score: float = 0.5,
        redetect_every: int = REDETECT_EVERY,
    ) -> None:
        if redetect_every < 1:
            raise ValueError(
                f"redetect_every={redetect_every}: search the whole frame at least every frame (1)"
            )
        self.detector, self.predictor = detector, predictor
        self.min_score, self.redetect_every = min_score, redetect_every
        self.tracks: list[Track] = []
        self.frames = 0
        self.searched = 0

    def step(self, frame: np.ndarray, timestamp_ms: int | None = None) -> list[FaceResult]:
        """The faces of the next frame (RGB) with their predictions, best detection first."""
        whole_frame = not self.tracks or self.frames % self.redetect_every == 0
        self.frames += 1
        if whole_frame:
            self.searched += 1
            pairs = self._matched(self.detector.locate(frame, self.min_score, timestamp_ms))
        else:
            pairs = self._followed(frame)
        faces, tracks = [], []
        for located, track in pairs:
            found = self.detector.crop_all(frame, [located])
            if found:
                faces.append(found[0])
                tracks.append(track or Track(located))
                tracks[-1].located = located
        self.tracks = tracks
        if not faces:
            return []
        outputs = self._predict([f.crop for f in faces], tracks)
        return [
            FaceResult(
                face.box,
                face.score,
                self.predictor.describe(outputs, i, framing_reasons(face.box, face.keypoints)),
                face.crop,
            )
            for i, face in enumerate(faces)
        ]

    def _matched(self, located: list[Located]) -> list[tuple[Located, Track | None]]:
        """Each detection (best first) with the unclaimed track it overlaps most, if any."""
        free = list(self.tracks)
        pairs = []
        for item in located:
            best = max(free, key=lambda t: box_iou(item[0], t.located[0]), default=None)
            if best is not None and box_iou(item[0], best.located[0]) >= MATCH_IOU:
                free.remove(best)
                pairs.append((item, best))
            else:
                pairs.append((item, None))
        return pairs

    def _followed(self, frame: np.ndarray) -> list[tuple[Located, Track | None]]:
        pairs: list[tuple[Located, Track | None]] = []
        for track in self.tracks:
            again = self.detector.follow(frame, track.located, self.min_score)
            if again is None or any(box_iou(again[0], kept[0]) >= SAME_FACE_IOU for kept, _ in pairs):
                continue
            pairs.append((again, track))
        pairs.sort(key=lambda pair: -pair[0][1])
        return pairs

    def _predict(self, crops: list[np.ndarray], tracks: list[Track]) -> dict[str, np.ndarray]:
        """Calibrated outputs for the faces: each the mean of its two views (see the module's note)."""
        predictor = self.predictor
        batch = predictor.to_batch(crops)
        if not predictor.single_views:
            return predictor.predict_batch(batch)
        # One model call: a new face's image and mirror, a followed face's other view.
        rows, views = [], []
        for i, track in enumerate(tracks):
            wanted = [False, True] if track.view is None else [not track.mirrored]
            for mirrored in wanted:
                rows.append(batch[i, :, ::-1] if mirrored else batch[i])
                views.append((i, mirrored))
        raw = predictor.raw_view(np.stack(rows), mirrored=False)
        averaged = {key: np.empty_like(value[: len(tracks)]) for key, value in raw.items()}
        for i, track in enumerate(tracks):
            mine = [r for r, (face, _) in enumerate(views) if face == i]
            last = mine[-1]
            other = {k: v[mine[0]] for k, v in raw.items()} if len(mine) == 2 else track.view
            for key, value in raw.items():
                averaged[key][i] = (value[last] + other[key]) / 2
            track.view = {k: v[last] for k, v in raw.items()}
            track.mirrored = views[last][1]
        return predictor.calibrated(averaged)
