"""The live webcam: frames detected, predicted and drawn at the camera's rate, and the WebRTC setup."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from typing import Any

import numpy as np

from agelab import settings
from agelab.annotate import annotate
from agelab.faces import FaceDetector
from agelab.predictor import Predictor
from agelab.tracking import FaceTracker


class LiveAnnotator:
    """Detects, predicts and draws on video frames, keeping the frame rate: faces are followed from
    frame to frame (:class:`agelab.tracking.FaceTracker`). Safe to call from the video thread while
    the page thread reads :attr:`fps` or sets :attr:`min_score`."""

    def __init__(self, detector: FaceDetector, predictor: Predictor, min_score: float = 0.5) -> None:
        self.detector, self.predictor = detector, predictor
        self.tracker = FaceTracker(detector, predictor, min_score)
        self._lock = threading.Lock()
        self._stamps: deque[float] = deque(maxlen=30)
        self._last_ms = 0.0
        self._last_faces = 0

    @property
    def min_score(self) -> float:
        return self.tracker.min_score

    @min_score.setter
    def min_score(self, value: float) -> None:
        self.tracker.min_score = value

    def process(self, frame: np.ndarray, timestamp_ms: int | None = None) -> np.ndarray:
        """The frame (RGB) with boxes, labels, and the frame rate drawn on it."""
        start = time.perf_counter()
        results = self.tracker.step(frame, timestamp_ms)
        ms = (time.perf_counter() - start) * 1000
        with self._lock:
            self._stamps.append(time.monotonic())
            self._last_ms, self._last_faces = ms, len(results)
        return annotate(frame, results, extra=f"{self.fps:.1f} fps, {ms:.0f} ms, {len(results)} faces")

    def on_video_frame(self, frame: Any) -> Any:
        """A streamlit-webrtc ``video_frame_callback``: ``av.VideoFrame`` in, annotated frame out."""
        import av

        out = self.process(frame.to_ndarray(format="rgb24"))
        annotated = av.VideoFrame.from_ndarray(out, format="rgb24")
        annotated.pts, annotated.time_base = frame.pts, frame.time_base
        return annotated

    @property
    def fps(self) -> float:
        with self._lock:
            stamps = list(self._stamps)
        if len(stamps) < 2 or stamps[-1] <= stamps[0]:
            return 0.0
        return (len(stamps) - 1) / (stamps[-1] - stamps[0])

    def stats(self) -> dict[str, float]:
        with self._lock:
            ms, faces = self._last_ms, self._last_faces
        return {"fps": self.fps, "ms": ms, "faces": faces}


def rtc_configuration() -> dict[str, Any]:
    """WebRTC ICE servers from ``AGELAB_ICE_SERVERS`` (JSON), default none (enough on one machine).

    Accepts ``{"iceServers": [...]}`` or the bare list, e.g.
    ``[{"urls": ["stun:stun.l.google.com:19302"]}]``; a TURN server is needed across most NATs.
    """
    raw = (settings.get("AGELAB_ICE_SERVERS") or "").strip()
    if not raw:
        return {"iceServers": []}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"AGELAB_ICE_SERVERS is not valid JSON ({exc}): {raw[:80]!r}") from None
    if isinstance(value, list):
        value = {"iceServers": value}
    if not isinstance(value, dict) or not isinstance(value.get("iceServers"), list):
        raise ValueError(
            'AGELAB_ICE_SERVERS must be {"iceServers": [...]} or a list of servers, '
            'e.g. [{"urls": ["stun:stun.l.google.com:19302"]}]'
        )
    return value
