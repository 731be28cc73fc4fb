"""Prediction with a saved model: ``load_predictor``, batched ``predict_crops``, the ``predict`` verb.

A model is a ``.keras`` file with its ``.json`` sidecar, or a run folder holding ``model.keras`` and
``model.json`` (the model contract in docs/architecture.md). Every face of a frame goes through the
model in one call to a compiled ``tf.function``: ``model.predict`` per frame was about 3x slower.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import logging
import os
import sys
import threading
import time
import zipfile
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import agelab  # noqa: F401  (sets KERAS_HOME before keras is imported)
from agelab import atomic
from agelab.bins import BinScheme, get_scheme
from agelab.calibration import finalize, raw_predictions
from agelab.crop import model_input
from agelab.faces import FaceDetector, ImageError, load_image
from agelab.paths import models_dir
from agelab.uncertainty import framing_reasons, prediction_reasons

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
DEFAULT_MODEL_NAME = "agelab-default.keras"


class ModelError(ValueError):
    """A model that cannot be found or does not follow the model contract."""


# --------------------------------------------------------------------------- the predictor


@dataclass
class FacePrediction:
    """What one face gets: its age bin with probability and the top 3, an age, a gender."""

    bin: int
    bin_label: str
    bin_prob: float
    top3: list[tuple[str, float]]
    age: float
    gender: str
    gender_prob: float
    prob_female: float
    # Why this prediction should not be trusted, in words (agelab.uncertainty); empty when it can be.
    reasons: list[str] = field(default_factory=list)

    @property
    def uncertain(self) -> bool:
        return bool(self.reasons)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["top3"] = [[label, round(p, 4)] for label, p in self.top3]
        out["uncertain"] = self.uncertain
        return out


def model_files(path: str | Path) -> tuple[Path, Path]:
    """The ``(model.keras, sidecar.json)`` pair for a run folder or a ``.keras`` file."""
    path = Path(path)
    if path.is_dir():
        model, sidecar = path / "model.keras", path / "model.json"
    elif path.suffix == ".keras":
        model, sidecar = path, path.with_suffix(".json")
    else:
        raise ModelError(f"{path}: give a run folder or a .keras file")
    if not model.is_file():
        raise ModelError(f"{path}: no model file {model.name} (has the run finished?)")
    if not sidecar.is_file():
        raise ModelError(f"{path}: the model has no sidecar {sidecar.name} with its bins and image size")
    return model, sidecar


class Predictor:
    """A loaded model with its bin scheme and input size. Thread-safe.

    ``backend="auto"`` serves from the model's LiteRT twin (``X.tflite``) when it exists and its
    sidecar record matches, else from Keras; ``"keras"`` forces Keras. ``backend`` and
    ``backend_note`` say which one serves; ``warning`` says why a twin was not used.
    """

    def __init__(self, path: str | Path, backend: str = "auto") -> None:
        if backend not in ("auto", "keras"):
            raise ValueError(f"backend={backend!r}: choose auto or keras")
        self.model_path, sidecar = model_files(path)
        self.path = Path(path)
        try:
            self.meta: dict[str, Any] = json.loads(sidecar.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ModelError(f"{sidecar}: not valid JSON ({exc})") from None
        missing = [k for k in ("bins", "image_size") if k not in self.meta]
        if missing:
            raise ModelError(f"{sidecar}: the sidecar lacks {', '.join(missing)}")
        self.scheme: BinScheme = get_scheme(self.meta["bins"])
        self.image_size = int(self.meta["image_size"])
        self.labels = self.scheme.labels
        self._lock = threading.Lock()
        self._model: Any = None
        self._lite: Any = None
        self._load_backend(backend)
        outputs = self._run(np.zeros((1, self.image_size, self.image_size, 3), np.float32))
        if outputs["age_bin"].shape[1] != self.scheme.num_bins:
            raise ModelError(
                f"{self.model_path}: the model has {outputs['age_bin'].shape[1]} age bins but its sidecar's "
                f"scheme {self.scheme.spec!r} has {self.scheme.num_bins}"
            )

    def _load_backend(self, backend: str) -> None:
        from agelab import litert

        twin = litert.twin_path(self.model_path)
        self.backend, self.backend_note, self.warning = "keras", "served by Keras (no LiteRT twin)", None
        if backend == "keras":
            self.backend_note = "served by Keras"
        elif twin.is_file():
            try:
                lite = litert.load_twin(self.model_path, self.meta)
                if lite.image_size != self.image_size:
                    raise ModelError(_size_mismatch(self.model_path, self.image_size, lite.image_size))
                self._lite = lite
                self.backend = "litert"
                self.backend_note = f"served by LiteRT ({twin.name}, XNNPACK, {lite.threads} threads)"
                return
            except litert.LiteRTError as exc:
                self.warning = (
                    f"{twin}: {exc}; serving with Keras instead. "
                    f"Re-export it: python -m agelab export --model {self.model_path}"
                )
                self.backend_note = f"served by Keras: {twin.name} was not used ({exc})"
                logging.getLogger(__name__).warning("agelab: %s", self.warning)
        self._load_keras()

    def _load_keras(self) -> None:
        self._model = _load_keras(self.model_path)
        shape = tuple(self._model.inputs[0].shape) if getattr(self._model, "inputs", None) else ()
        if len(shape) == 4 and shape[1] is not None and shape[1] != self.image_size:
            raise ModelError(_size_mismatch(self.model_path, self.image_size, int(shape[1])))
        self._call = _compile(self._model, self.image_size)

    @property
    def model(self) -> Any:
        """The Keras model (loaded on first use when the predictor serves from LiteRT)."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = _load_keras(self.model_path)
        return self._model

    def _run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if self._lite is not None:
            out = self._lite(batch)
        else:
            import tensorflow as tf

            with self._lock:
                out = self._call(tf.constant(batch))
        missing = [k for k in ("age_bin", "age", "gender") if k not in out]
        if missing:
            raise ModelError(f"{self.model_path}: the model does not return {', '.join(missing)}")
        return {k: np.asarray(v) for k, v in out.items()}

    def prepare(self, crops: list[np.ndarray]) -> np.ndarray:
        """Crops resized to the model's input (:func:`agelab.crop.model_input`, as in training), as
        one float32 batch in 0-255."""
        size = self.image_size
        batch = np.empty((len(crops), size, size, 3), np.float32)
        for i, crop in enumerate(crops):
            try:
                batch[i] = model_input(crop, size)
            except ValueError as err:
                raise ValueError(f"crop {i}: {err}") from None
        return batch

    def raw_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The model's own outputs for a prepared batch, before calibration: ``age_bin`` (N, K),
        ``age`` (N,), ``prob_female`` (N,)."""
        return raw_predictions(self._run(batch))

    def predict_batch(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The predictions for a prepared batch: ``age_bin`` (N, K) calibrated probabilities, ``age``
        (N,) within the predicted group, ``age_raw`` (N,) the years head, ``prob_female`` (N,)
        (:func:`agelab.calibration.finalize`)."""
        if len(batch) == 0:
            k = self.scheme.num_bins
            empty = np.zeros(0)
            return {
                "age_bin": np.zeros((0, k), np.float32),
                "age": empty,
                "age_raw": empty,
                "prob_female": empty,
            }
        return finalize(self.raw_outputs(batch), self.scheme, self.meta.get("calibration"))

    def predict_crops(self, crops: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Predict every crop (HxWx3 uint8 RGB, any size) in one batched call."""
        return self.predict_batch(self.prepare(crops))

    def describe(
        self, outputs: dict[str, np.ndarray], i: int, framing: list[str] | None = None
    ) -> FacePrediction:
        """The readable result for face ``i`` of :meth:`predict_crops`'s outputs; ``framing`` adds the
        face's own reasons for doubt (:func:`agelab.uncertainty.framing_reasons`)."""
        probs = outputs["age_bin"][i]
        order = np.argsort(-probs)
        best = int(order[0])
        prob_female = float(outputs["prob_female"][i])
        female = prob_female >= 0.5
        gender_prob = prob_female if female else 1.0 - prob_female
        age_raw = float(outputs.get("age_raw", outputs["age"])[i])
        reasons = prediction_reasons(self.scheme, best, float(probs[best]), age_raw, gender_prob)
        reasons += framing or []
        return FacePrediction(
            bin=best,
            bin_label=self.labels[best],
            bin_prob=float(probs[best]),
            top3=[(self.labels[int(j)], float(probs[j])) for j in order[:3]],
            age=float(outputs["age"][i]),
            gender="female" if female else "male",
            gender_prob=gender_prob,
            prob_female=prob_female,
            reasons=reasons,
        )

    def describe_all(self, outputs: dict[str, np.ndarray]) -> list[FacePrediction]:
        return [self.describe(outputs, i) for i in range(len(outputs["age"]))]


def _load_keras(path: Path) -> Any:
    import keras

    # Models built by agelab.models may use layers that register themselves on import.
    with contextlib.suppress(ImportError):
        import agelab.models  # noqa: F401
    if not zipfile.is_zipfile(path):
        # Keras says "File not found" for any file that is not a zip archive.
        raise ModelError(
            f"{path}: the model file is corrupt (not a .keras zip archive); retrain or re-copy it"
        )
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as exc:
        raise ModelError(f"{path}: Keras cannot load it ({type(exc).__name__}: {exc})") from None


def _size_mismatch(path: Path, sidecar_size: int, model_size: int) -> str:
    return (
        f"{path}: its sidecar {path.with_suffix('.json').name} says image_size {sidecar_size} but the model "
        f"takes {model_size}x{model_size} images; set image_size to {model_size} in the sidecar"
    )


def _compile(model: Any, image_size: int) -> Any:
    import tensorflow as tf

    spec = tf.TensorSpec([None, image_size, image_size, 3], tf.float32)

    # One trace for every batch size: the batch dimension is left open.
    @tf.function(input_signature=[spec], reduce_retracing=True)
    def call(images: Any) -> Any:
        return model(images, training=False)

    return call


def model_stamp(path: str | Path) -> float:
    """The latest change time of a model's files (``.keras``, sidecar, ``.tflite`` twin)."""
    model, sidecar = model_files(path)
    twin = model.with_suffix(".tflite")
    return max(p.stat().st_mtime for p in (model, sidecar, twin) if p.is_file())


_CACHE: dict[tuple[str, float], Predictor] = {}
_CACHE_LOCK = threading.Lock()


def load_predictor(path: str | Path) -> Predictor:
    """The model at ``path`` (run folder or ``.keras`` file), loaded once and cached.

    A model rewritten since it was loaded (its ``.keras``, sidecar or ``.tflite``) is loaded again.
    """
    model, _ = model_files(path)
    key = (str(model.resolve()), model_stamp(path))
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = Predictor(path)
        return _CACHE[key]


# --------------------------------------------------------------------------- whole images


@dataclass
class FaceResult:
    """A face found in an image (or the whole image, with ``box`` covering it) and its prediction."""

    box: tuple[int, int, int, int]
    score: float | None
    prediction: FacePrediction
    crop: np.ndarray = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        p = self.prediction
        return {
            "box": list(self.box),
            "score": None if self.score is None else round(self.score, 4),
            "bin": p.bin,
            "bin_label": p.bin_label,
            "bin_prob": round(p.bin_prob, 4),
            "top3": [[label, round(prob, 4)] for label, prob in p.top3],
            "age": round(p.age, 1),
            "gender": p.gender,
            "gender_prob": round(p.gender_prob, 4),
            "uncertain": p.uncertain,
            "reasons": p.reasons,
        }


def predict_image(
    image: np.ndarray,
    detector: FaceDetector | None,
    predictor: Predictor,
    min_score: float = 0.5,
    timestamp_ms: int | None = None,
) -> list[FaceResult]:
    """Every face of ``image`` with its prediction, best detection first.

    With ``detector=None`` the whole image is one face crop. An image with no face gives ``[]``.
    """
    if detector is None:
        height, width = image.shape[:2]
        boxes, scores, crops = [(0, 0, width, height)], [None], [image]
        framings: list[list[str]] = [[]]
    else:
        faces = detector.detect(image, min_score=min_score, timestamp_ms=timestamp_ms)
        boxes, scores, crops = [f.box for f in faces], [f.score for f in faces], [f.crop for f in faces]
        framings = [framing_reasons(f.box, f.keypoints) for f in faces]
    if not crops:
        return []
    outputs = predictor.predict_crops(crops)
    return [
        FaceResult(box, score, predictor.describe(outputs, i, framing), crop)
        for i, (box, score, crop, framing) in enumerate(zip(boxes, scores, crops, framings))
    ]


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


# --------------------------------------------------------------------------- live video


class LiveAnnotator:
    """Detects, predicts and draws on video frames, keeping the frame rate. Safe to call from the
    video thread while the page thread reads :attr:`fps` or sets :attr:`min_score`."""

    def __init__(self, detector: FaceDetector, predictor: Predictor, min_score: float = 0.5) -> None:
        self.detector, self.predictor, self.min_score = detector, predictor, min_score
        self._lock = threading.Lock()
        self._stamps: deque[float] = deque(maxlen=30)
        self._last_ms = 0.0
        self._last_faces = 0

    def process(self, frame: np.ndarray, timestamp_ms: int | None = None) -> np.ndarray:
        """The frame (RGB) with boxes, labels, and the frame rate drawn on it."""
        start = time.perf_counter()
        results = predict_image(frame, self.detector, self.predictor, self.min_score, timestamp_ms)
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
    raw = os.environ.get("AGELAB_ICE_SERVERS", "").strip()
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


# --------------------------------------------------------------------------- available models


@dataclass
class ModelInfo:
    """A model the app can use: a finished run or a ``.keras`` file under ``models/``."""

    name: str
    path: Path
    kind: str
    metrics: dict[str, Any]
    bins: str | None
    image_size: int | None
    model: str | None


def _sidecar_info(name: str, path: Path, kind: str, metrics: dict[str, Any] | None) -> ModelInfo | None:
    try:
        _, sidecar = model_files(path)
    except ModelError:
        return None
    meta = atomic.read_json(sidecar, {}) or {}
    return ModelInfo(
        name=name,
        path=path,
        kind=kind,
        metrics=metrics if metrics is not None else (meta.get("metrics") or {}),
        bins=meta.get("bins"),
        image_size=meta.get("image_size"),
        model=meta.get("model"),
    )


def available_models() -> list[ModelInfo]:
    """Finished runs (newest first), then ``.keras`` files under the models folder, with test metrics."""
    found: list[ModelInfo] = []
    try:
        from agelab.runs import list_runs
    except ImportError:  # the runs module is not there yet
        list_runs = None
    if list_runs is not None:
        for run in list_runs():
            if getattr(run, "state", "finished") != "finished":
                continue
            info = _sidecar_info(
                f"run {run.path.name}", run.path, "run", dict(getattr(run, "metrics", {}) or {})
            )
            if info is not None:
                found.append(info)
    folder = models_dir()
    if folder.is_dir():
        for path in sorted(folder.glob("*.keras")):
            info = _sidecar_info(path.name, path, "file", None)
            if info is not None:
                found.append(info)
    return found


def default_model() -> Path | None:
    """The shipped default model if present, else the first available one."""
    shipped = models_dir() / DEFAULT_MODEL_NAME
    if shipped.is_file():
        return shipped
    models = available_models()
    return models[0].path if models else None


# --------------------------------------------------------------------------- the predict verb


def iter_images(paths: list[str]) -> list[Path]:
    """Files as given, and the image files inside folders (recursively, sorted)."""
    out: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(path)
    return out


def predict_file(
    path: Path, detector: FaceDetector | None, predictor: Predictor, min_score: float
) -> dict[str, Any]:
    """One JSON-ready record: ``path``, ``faces`` and ``ms``, or ``error``."""
    start = time.perf_counter()
    record: dict[str, Any] = {"path": str(path)}
    try:
        image = load_image(path)
        results = predict_image(image, detector, predictor, min_score)
        record["faces"] = [r.as_dict() for r in results]
    except ImageError as exc:
        record["error"] = str(exc)
    record["ms"] = round((time.perf_counter() - start) * 1000, 1)
    return record


CSV_COLUMNS = ["path", "face", "x", "y", "w", "h", "score", "bin", "bin_label", "bin_prob", "age", "gender"]
CSV_COLUMNS += ["gender_prob", "uncertain", "reasons", "ms", "error"]


def flat_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per face (and one per image without a face or with an error)."""
    rows = []
    for rec in records:
        base = {"path": rec["path"], "ms": rec.get("ms"), "error": rec.get("error", "")}
        faces = rec.get("faces") or []
        if not faces:
            rows.append({**base, "face": ""})
        for i, face in enumerate(faces):
            x, y, w, h = face["box"]
            extra = {
                k: face[k] for k in ("score", "bin", "bin_label", "bin_prob", "age", "gender", "gender_prob")
            }
            extra["uncertain"] = face.get("uncertain", False)
            extra["reasons"] = "; ".join(face.get("reasons", []))
            rows.append({**base, "face": i, "x": x, "y": y, "w": w, "h": h, **extra})
    return rows


def record_notes(record: dict[str, Any]) -> list[str]:
    """What a person reading the terminal should know about one image's result, in words."""
    if "error" in record:
        return [record["error"]]
    faces = record.get("faces") or []
    if not faces:
        return ["no face found (for a face crop use --no-detect; for a faint face lower --min-score)"]
    return [
        f"face {i + 1} is uncertain: {'; '.join(face['reasons'])}"
        for i, face in enumerate(faces)
        if face.get("uncertain")
    ]


def write_csv(path: str | Path, records: list[dict[str, Any]]) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(flat_rows(records))
    return atomic.write_text(path, buffer.getvalue())


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agelab predict",
        description="Predict age group and gender for every face in images; one JSON line per image.",
    )
    parser.add_argument("paths", nargs="+", help="image files or folders of images")
    parser.add_argument(
        "--model", help=f"a run folder or a .keras file (default: models/{DEFAULT_MODEL_NAME})"
    )
    parser.add_argument("--no-detect", action="store_true", help="treat each image as one face crop")
    parser.add_argument(
        "--detector", choices=["short", "full"], default="short", help="MediaPipe model range"
    )
    parser.add_argument("--detector-model", help="a face detector .tflite file (else AGELAB_FACE_MODEL)")
    parser.add_argument("--min-score", type=float, default=0.5, help="minimum detection confidence (0-1)")
    parser.add_argument("--out", help="also write a flat CSV table, one row per face")
    args = parser.parse_args(argv)
    if not 0.0 <= args.min_score <= 1.0:
        parser.error(f"--min-score {args.min_score}: must be between 0 and 1")
    model_path = args.model or default_model()
    if model_path is None:
        print(
            f"agelab predict: no model given and none found; pass --model with a run folder or .keras file "
            f"(models are looked for in {models_dir()} and the finished runs)",
            file=sys.stderr,
        )
        return 2
    try:
        predictor = load_predictor(model_path)
        detector = None if args.no_detect else FaceDetector(args.detector, args.detector_model)
    except (ModelError, RuntimeError, ValueError) as exc:
        print(f"agelab predict: {exc}", file=sys.stderr)
        return 2
    files = iter_images(args.paths)
    if not files:
        print(f"agelab predict: no image files in {', '.join(args.paths)}", file=sys.stderr)
        return 2
    records = []
    for path in files:
        record = predict_file(path, detector, predictor, args.min_score)
        records.append(record)
        print(atomic.dumps(record), flush=True)
        for note in record_notes(record):
            print(f"{path}: {note}", file=sys.stderr)
    if args.out:
        write_csv(args.out, records)
        print(f"wrote {args.out} ({len(flat_rows(records))} rows)", file=sys.stderr)
    if detector is not None:
        detector.close()
    return 1 if all("error" in r for r in records) else 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
