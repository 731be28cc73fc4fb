"""MediaPipe's short-range face detector (BlazeFace) run directly by LiteRT.

The model file is the one MediaPipe Tasks' ``FaceDetector`` loads; this module repeats what that
task's graph does around it (``face_detector_graph.cc`` in MediaPipe): the image letterboxed onto a
128 px square (bilinear, black border, values in [-1, 1]), the SSD anchors, the box and keypoint
decoding, and weighted non-maximum suppression. Why not call the task: on this 2-core machine its
graph costs ~0.9 ms per call around a 0.4 ms model (bench/latency.py), which was half of the
end-to-end time for a one-face photo.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

INPUT_SIZE = 128
NUM_ANCHORS = 896
# Values per anchor: box centre, width, height, then six (x, y) keypoints, all in input pixels.
NUM_COORDS = 16
NUM_KEYPOINTS = 6
# Strides of the model's four output layers; layers of equal stride share one grid (SSD anchors,
# two per layer and cell, fixed size).
STRIDES = (8, 16, 16, 16)
ANCHORS_PER_LAYER = 2
# MediaPipe's FaceDetectorOptions default.
SUPPRESSION_IOU = 0.3
SCORE_CLIP = 100.0


class UnsupportedDetectorModel(ValueError):
    """The model file is not the 128 px, 896-anchor short-range detector this module decodes."""


def ssd_anchors() -> np.ndarray:
    """``(896, 2)`` anchor centres in [0, 1] (x, y), in the model's output order."""
    centres = []
    layer = 0
    while layer < len(STRIDES):
        stride, per_cell = STRIDES[layer], 0
        while layer < len(STRIDES) and STRIDES[layer] == stride:
            per_cell += ANCHORS_PER_LAYER
            layer += 1
        cells = int(np.ceil(INPUT_SIZE / stride))
        for y in range(cells):
            for x in range(cells):
                centres += [((x + 0.5) / cells, (y + 0.5) / cells)] * per_cell
    return np.array(centres, np.float32)


def letterbox(image: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """The model's input for an RGB ``uint8`` image, and how to map back: ``(tensor, side, left,
    top)``, where input coordinate ``u`` in [0, 1] is image pixel ``left + u * side``."""
    import cv2

    height, width = image.shape[:2]
    side = float(max(height, width))
    left, top = width / 2 - side / 2, height / 2 - side / 2
    if height == width == INPUT_SIZE:
        # Already the input (the close-ups of small faces are made at this size): the warp would copy it.
        pixels = image
    else:
        zoom = INPUT_SIZE / side
        to_input = np.array([[zoom, 0, -left * zoom], [0, zoom, -top * zoom]], np.float64)
        pixels = cv2.warpAffine(
            image, to_input, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )
    tensor = pixels.astype(np.float32) * np.float32(2 / 255) - np.float32(1)
    return tensor[None], side, left, top


def weighted_nms(
    boxes: np.ndarray, points: np.ndarray, scores: np.ndarray, iou: float
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe's weighted non-maximum suppression: each kept face is the score-weighted mean of
    the boxes (``xmin, ymin, xmax, ymax``) and keypoints overlapping the best remaining one by more
    than ``iou``; its score is that best one's. Returns ``(box, keypoints, score)`` tuples."""
    order = np.argsort(-scores, kind="stable")
    kept = []
    while order.size:
        best = boxes[order[0]]
        rest = boxes[order]
        inter_w = np.clip(np.minimum(rest[:, 2], best[2]) - np.maximum(rest[:, 0], best[0]), 0, None)
        inter_h = np.clip(np.minimum(rest[:, 3], best[3]) - np.maximum(rest[:, 1], best[1]), 0, None)
        inter = inter_w * inter_h
        area = (rest[:, 2] - rest[:, 0]) * (rest[:, 3] - rest[:, 1])
        best_area = (best[2] - best[0]) * (best[3] - best[1])
        union = area + best_area - inter
        overlap = np.where(union > 0, inter / np.where(union > 0, union, 1), 0)
        together = overlap > iou
        members = order[together]
        weights = scores[members][:, None]
        total = weights.sum()
        if members.size:
            box = (boxes[members] * weights).sum(0) / total
            keypoints = (points[members] * weights[:, :, None]).sum(0) / total
        else:
            box, keypoints = best, points[order[0]]
        kept.append((box, keypoints, float(scores[order[0]])))
        if not members.size:
            break
        order = order[~together]
    return kept


class BlazeFace:
    """The short-range detector model in a LiteRT interpreter; :meth:`detect` gives faces in an
    image's pixels. Not thread-safe on its own: calls are serialised with a lock."""

    def __init__(self, model_path: str | Path, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.model_path = Path(model_path)
        self._interpreter = Interpreter(model_path=str(self.model_path), num_threads=threads)
        self._interpreter.allocate_tensors()
        (entry,) = self._interpreter.get_input_details()
        outputs = {tuple(o["shape"][-1:]): o["index"] for o in self._interpreter.get_output_details()}
        if tuple(entry["shape"]) != (1, INPUT_SIZE, INPUT_SIZE, 3) or set(outputs) != {(NUM_COORDS,), (1,)}:
            raise UnsupportedDetectorModel(
                f"{self.model_path.name}: not the short-range face detector (input "
                f"{tuple(entry['shape'])}, outputs {sorted(outputs)})"
            )
        self._input = entry["index"]
        self._regressors, self._classifiers = outputs[(NUM_COORDS,)], outputs[(1,)]
        self._anchors = ssd_anchors()
        self._lock = threading.Lock()

    def detect(
        self, image: np.ndarray, min_score: float
    ) -> list[tuple[tuple[float, float, float, float], float, np.ndarray]]:
        """``((x, y, w, h), score, keypoints)`` for each face scoring at least ``min_score``, best
        first, in ``image``'s pixels (boxes may reach past its edges)."""
        tensor, side, left, top = letterbox(image)
        with self._lock:
            self._interpreter.set_tensor(self._input, tensor)
            self._interpreter.invoke()
            raw = self._interpreter.get_tensor(self._regressors)[0]
            logits = self._interpreter.get_tensor(self._classifiers)[0, :, 0]
        scores = 1 / (1 + np.exp(-np.clip(logits.astype(np.float64), -SCORE_CLIP, SCORE_CLIP)))
        chosen = np.flatnonzero(scores >= min_score)
        if not chosen.size:
            return []
        raw, anchors, scores = raw[chosen] / INPUT_SIZE, self._anchors[chosen], scores[chosen]
        centre = raw[:, :2] + anchors
        half = raw[:, 2:4] / 2
        boxes = np.concatenate([centre - half, centre + half], axis=1)
        points = raw[:, 4:].reshape(-1, NUM_KEYPOINTS, 2) + anchors[:, None, :]
        faces = []
        for box, keypoints, score in weighted_nms(boxes, points, scores, SUPPRESSION_IOU):
            x0, y0 = left + box[0] * side, top + box[1] * side
            w, h = (box[2] - box[0]) * side, (box[3] - box[1]) * side
            pixels = keypoints.astype(np.float64) * side + np.array([left, top])
            faces.append(((float(x0), float(y0), float(w), float(h)), score, pixels))
        return faces
