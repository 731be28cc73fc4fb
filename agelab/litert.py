"""LiteRT (TFLite) twins of saved models: ``export`` and the interpreter that serves them.

Every ``X.keras`` can have an ``X.tflite`` beside it, converted from the same weights
(``model.export(format="tf_saved_model")``, then ``tf.lite.TFLiteConverter``). Its sidecar ``X.json``
records both files under ``"litert"``: the ``.tflite``'s name and SHA-256, and the SHA-256 of the
``.keras`` it was converted from. :class:`LiteRTModel` serves a twin only when that record matches
both files, so a retrained ``.keras`` never runs with a stale ``.tflite``.

``export --int8`` also writes ``X.int8.tflite`` (weights and activations in int8, calibrated on
training-split faces cropped as ``predict`` crops them), recorded under ``"litert_int8"`` with its
measured agreement with Keras on validation faces. Where it exists it serves first: on the shipped
model it was 1.5x faster than float32 and its accuracy change was inside every 95 % interval of the
test split (``bench/quantize.py``, docs/recipes.md).

The runtime is ``ai-edge-litert`` (Google's maintained LiteRT package): ``tf.lite.Interpreter`` warns
that it is deprecated in favour of it, and MediaPipe runs only its own task graphs. Serving needs no
TensorFlow import; exporting does.

    python -m agelab export --model models/agelab-default.keras
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

import agelab  # noqa: F401  (sets KERAS_HOME before keras is imported)
from agelab import atomic
from agelab.model_files import (
    MODEL_SPEC_HELP,
    ModelError,
    int8_twin_path,
    load_keras,
    model_and_sidecar,
    read_sidecar,
    record_in_sidecar,
    twin_path,
)

RECORD_KEY = "litert"
INT8_RECORD_KEY = "litert_int8"
# The twin of each precision: its sidecar record and its file.
PRECISIONS: dict[str, tuple[str, Callable[[str | Path], Path]]] = {
    "float32": (RECORD_KEY, twin_path),
    "int8": (INT8_RECORD_KEY, int8_twin_path),
}
# The int8 twin is refused when it disagrees with Keras on validation faces more than this: a broken
# conversion, not quantization noise (the shipped model's twin: 92 % same group, 99.7 % same gender,
# 0.87 years).
INT8_MIN_SAME_BIN = 0.75
INT8_MIN_SAME_GENDER = 0.95
INT8_MAX_AGE_GAP = 2.0
OUTPUTS = ("age_bin", "age", "gender")
# XNNPACK threads: 2 was measured best on the 2-core machine; more cores rarely help a
# model this small, and the face detector and the page need some.
THREADS = max(1, min(2, os.cpu_count() or 1))
# One interpreter per batch size, each allocated once: resizing one interpreter on every change of
# face count (the live webcam: 1, 3, 2, ... faces) re-plans XNNPACK each time. Larger batches go
# through in chunks of MAX_BATCH: per face, batches of 8-16 ran fastest (MobileNetV2 0.5 @ 144 px,
# 2 cores: 0.85-0.9 ms against 1.25 for single faces and 1.1-1.2 for batches of 64, whose
# activations outgrow the cache; bench/latency.py).
MAX_BATCH = 16
KEEP_INTERPRETERS = 8
QUANTIZATIONS = ("none", "dynamic", "float16", "int8")


class LiteRTError(RuntimeError):
    """A ``.tflite`` twin that cannot serve its model: missing record, stale, corrupt or mismatched."""


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def runtime_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"ai-edge-litert {version('ai-edge-litert')}"
    except PackageNotFoundError:
        return "ai-edge-litert (not installed)"


# --------------------------------------------------------------------------- serving


class LiteRTModel:
    """A ``.tflite`` model with the agelab contract: float32 RGB 0-255 in, raw ``age_bin``, ``age``,
    ``gender`` out (the same dict the Keras model returns). Thread-safe."""

    def __init__(self, path: str | Path, threads: int = THREADS, mirror_views: bool = False) -> None:
        self.path = Path(path)
        self.threads = threads
        # The twin of a mirror-averaged model holds one view: a call averages it over the image and
        # its mirror, sent as one batch of both (measured a little faster than the in-graph mirror),
        # and :meth:`view` runs one view alone (the live webcam alternates them across frames).
        self.mirror_views = mirror_views
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise LiteRTError(
                f"the LiteRT runtime is not installed ({exc}); pip install ai-edge-litert"
            ) from None
        self._interpreter_class = Interpreter
        self._content = self.path.read_bytes()
        self._lock = threading.Lock()
        self._runners: OrderedDict[int, tuple[Any, int, dict[str, int]]] = OrderedDict()
        try:
            probe = self._make(1)
        except (ValueError, RuntimeError) as exc:
            raise LiteRTError(f"{self.path.name} is not a loadable LiteRT model ({exc})") from None
        self._runners[1] = probe
        interpreter, input_index, _ = probe
        detail = next(d for d in interpreter.get_input_details() if d["index"] == input_index)
        shape = [int(v) for v in detail["shape_signature"]]
        if len(shape) != 4 or shape[3] != 3 or detail["dtype"] != np.float32:
            raise LiteRTError(
                f"{self.path.name} takes {detail['dtype'].__name__} {shape}, not RGB float32 images"
            )
        self.image_size = shape[1]
        self.dynamic_batch = shape[0] == -1
        self.size_bytes = len(self._content)

    def _make(self, batch: int) -> tuple[Any, int, dict[str, int]]:
        interpreter = self._interpreter_class(model_content=self._content, num_threads=self.threads)
        signatures = interpreter.get_signature_list()
        if len(signatures) != 1:
            raise LiteRTError(f"{self.path.name} has signatures {sorted(signatures)}, expected one")
        runner = interpreter.get_signature_runner(next(iter(signatures)))
        inputs, outputs = runner.get_input_details(), runner.get_output_details()
        # Only the tensor indices are kept: a live runner holds the interpreter's internals and
        # makes it refuse to resize or invoke.
        del runner
        missing = [k for k in OUTPUTS if k not in outputs]
        if len(inputs) != 1 or missing:
            raise LiteRTError(
                f"{self.path.name} has inputs {sorted(inputs)} and outputs {sorted(outputs)}; "
                f"expected one image input and {', '.join(OUTPUTS)}"
            )
        input_index = next(iter(inputs.values()))["index"]
        if batch != 1:
            interpreter.resize_tensor_input(
                input_index, [batch, *interpreter.get_input_details()[0]["shape"][1:]]
            )
        interpreter.allocate_tensors()
        return interpreter, input_index, {k: outputs[k]["index"] for k in OUTPUTS}

    def _runner(self, batch: int) -> tuple[Any, int, dict[str, int]]:
        if batch in self._runners:
            self._runners.move_to_end(batch)
        else:
            if batch != 1 and not self.dynamic_batch:
                raise LiteRTError(f"{self.path.name} was exported for batches of 1 only")
            self._runners[batch] = self._make(batch)
            while len(self._runners) > KEEP_INTERPRETERS:
                self._runners.popitem(last=False)
        return self._runners[batch]

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Raw outputs for a float32 batch (N, S, S, 3): ``age_bin`` (N, K), ``age`` (N, 1), ``gender`` (N, 1);
        the mean of both views when the twin holds one view of a mirror-averaged model."""
        if not self.mirror_views:
            return self.view(batch)
        both = self.view(np.concatenate([batch, batch[:, :, ::-1]]))
        n = len(batch)
        return {k: (v[:n] + v[n:]) / 2 for k, v in both.items()}

    def view(self, batch: np.ndarray, mirrored: bool = False) -> dict[str, np.ndarray]:
        """Raw outputs of the twin's own graph for ``batch``, or for its mirror image."""
        if mirrored:
            batch = batch[:, :, ::-1]
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        parts: list[dict[str, np.ndarray]] = []
        with self._lock:
            for start in range(0, len(batch), MAX_BATCH):
                chunk = batch[start : start + MAX_BATCH]
                interpreter, input_index, output_indices = self._runner(len(chunk))
                interpreter.set_tensor(input_index, chunk)
                interpreter.invoke()
                parts.append({k: interpreter.get_tensor(i) for k, i in output_indices.items()})
        if len(parts) == 1:
            return parts[0]
        return {k: np.concatenate([p[k] for p in parts]) for k in OUTPUTS}


def load_twin(model_path: str | Path, meta: dict[str, Any], precision: str = "float32") -> LiteRTModel:
    """The ``.tflite`` twin of ``model_path`` in ``precision`` (float32 or int8), checked against the
    sidecar's record of both files.

    Raises :class:`LiteRTError` with the reason when the twin must not serve the model.
    """
    model_path = Path(model_path)
    key, path_of = PRECISIONS[precision]
    path = path_of(model_path)
    record = meta.get(key)
    if not isinstance(record, dict) or "sha256" not in record or "keras_sha256" not in record:
        raise LiteRTError(f"the sidecar has no {key!r} record of {path.name}, so it may be stale")
    try:
        if sha256(path) != record["sha256"]:
            raise LiteRTError(f"{path.name} is not the file its sidecar records (corrupt or replaced)")
        if sha256(model_path) != record["keras_sha256"]:
            raise LiteRTError(f"{path.name} was exported from another version of {model_path.name}")
        return LiteRTModel(path, mirror_views=bool(record.get("mirror_views", False)))
    except OSError as err:  # an unreadable twin: the next twin, or Keras, serves instead
        raise LiteRTError(f"{err.filename or path} cannot be read ({err.strerror or err})") from None


# --------------------------------------------------------------------------- export


def single_view(keras_model: Any) -> tuple[Any, bool]:
    """The model without its in-graph mirror view (:func:`agelab.ensemble.create_ensemble` over the
    same members, sharing their weights), and whether it had one. The twin of a mirror-averaged model
    is this one view: serving sends the image and its mirror as one batch, or one view alone."""
    from agelab.ensemble import MirrorImages, create_ensemble

    if not any(isinstance(layer, MirrorImages) for layer in keras_model.layers):
        return keras_model, False
    import keras

    members = [layer for layer in keras_model.layers if isinstance(layer, keras.Model)]
    return create_ensemble(members, flip=False), True


def convert(
    keras_model: Any,
    quantize: str = "none",
    representative: Callable[[], Iterable[np.ndarray]] | None = None,
) -> bytes:
    """The ``.tflite`` bytes of a Keras model (float32 unless ``quantize`` says otherwise).

    ``int8`` quantizes weights and activations, calibrated on ``representative()`` batches (float32
    0-255, the model's input); its input and output stay float32, so it is a drop-in twin.
    """
    import tensorflow as tf

    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize={quantize!r}: choose from {', '.join(QUANTIZATIONS)}")
    if quantize == "int8" and representative is None:
        raise ValueError("int8 quantization needs representative images to calibrate on")
    with tempfile.TemporaryDirectory(prefix="agelab-export-") as tmp:
        saved = Path(tmp) / "saved_model"
        keras_model.export(str(saved), format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize == "int8":

            def dataset() -> Iterable[list[np.ndarray]]:
                for images in representative():
                    for image in np.asarray(images, np.float32):
                        yield [image[None]]

            converter.representative_dataset = dataset
        return converter.convert()


def probe_batch(image_size: int, n: int = 4, seed: int = 0) -> np.ndarray:
    """A seeded batch of smooth random images in 0-255 (for the export's own check)."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (n, 9, 9, 3)).astype(np.float32)
    return np.stack(
        [cv2.resize(img, (image_size, image_size), interpolation=cv2.INTER_CUBIC) for img in small]
    )


def max_output_gap(keras_model: Any, lite: LiteRTModel, batch: np.ndarray) -> float:
    """The largest absolute difference between the two models' raw outputs on ``batch``."""
    ours = lite(batch)
    ref = keras_model(batch, training=False)
    return max(float(np.abs(np.asarray(ref[k]).reshape(ours[k].shape) - ours[k]).max()) for k in OUTPUTS)


def prepared_faces(
    meta: dict[str, Any], split: str, n: int | None = None, seed: int = 0, data: str | Path | None = None
) -> tuple[Any, np.ndarray]:
    """``n`` faces of a dataset split (all with ``None``) and the model's float32 input batch of them,
    cropped the way ``evaluate`` and ``predict`` crop them (the detector's aligned crop for a model
    trained on those): the split's rows, in the batch's order, and the batch."""
    from agelab.crop import model_input
    from agelab.crop_cache import aligned_inputs
    from agelab.data_sources import load_data
    from agelab.images import load_image

    frame = load_data(data)
    where = data or "data/UTKFace"
    if frame.empty:
        raise ModelError(
            f"the dataset {where} holds no well-named UTKFace image to take faces from; give --data a folder of them"
        )
    frame = frame[frame["split"] == split]
    if frame.empty:
        raise ModelError(
            f"the dataset {where} has no {split} images to take faces from (too few images to split:"
            " give --data a larger folder)"
        )
    if n is not None and n < len(frame):
        frame = frame.sample(n, random_state=seed)
    size = int(meta["image_size"])
    if meta.get("crop") == "aligned":
        frame = aligned_inputs(frame, size, log=lambda _: None)
    else:
        frame = frame.assign(input=frame["path"]).reset_index(drop=True)
    batch = np.stack([model_input(load_image(f), size) for f in frame["input"]]).astype(np.float32)
    return frame, batch


def agreement(keras_model: Any, lite: LiteRTModel, batch: np.ndarray) -> dict[str, float]:
    """How often a twin gives Keras's age group and gender, and its mean age gap, on ``batch``."""
    ours = {k: np.asarray(v) for k, v in lite(batch).items()}
    ref = {k: np.asarray(v) for k, v in keras_model.predict(batch, batch_size=64, verbose=0).items()}
    return {
        "n": len(batch),
        "same_bin": float((ours["age_bin"].argmax(1) == ref["age_bin"].argmax(1)).mean()),
        "same_gender": float(((ours["gender"] >= 0.5) == (ref["gender"] >= 0.5)).mean()),
        "mean_age_gap": float(np.abs(ours["age"].reshape(-1) - ref["age"].reshape(-1)).mean()),
    }


def export_int8(
    model_path: str | Path, calibration: int = 300, check: int = 300, data: str | Path | None = None
) -> Path:
    """Write ``X.int8.tflite`` beside ``X.keras``: int8 weights and activations, calibrated on
    ``calibration`` training-split faces; recorded in ``X.json`` with its agreement with Keras on
    ``check`` validation faces. A twin that disagrees like a broken conversion (below
    ``INT8_MIN_SAME_BIN`` etc.) raises :class:`LiteRTError` and leaves the old files alone."""
    keras_path, _ = model_and_sidecar(model_path)
    meta = read_sidecar(keras_path)
    keras_sha = sha256(keras_path)
    keras_model = load_keras(keras_path)
    one_view, mirror_views = single_view(keras_model)
    _, faces = prepared_faces(meta, "train", calibration, data=data)
    data_bytes = convert(
        one_view, "int8", representative=lambda: (faces[i : i + 32] for i in range(0, len(faces), 32))
    )
    out = int8_twin_path(keras_path)
    with tempfile.TemporaryDirectory(prefix="agelab-export-") as tmp:
        staged = Path(tmp) / out.name
        staged.write_bytes(data_bytes)
        lite = LiteRTModel(staged, mirror_views=mirror_views)
        measured = agreement(keras_model, lite, prepared_faces(meta, "val", check, seed=1, data=data)[1])
    if (
        measured["same_bin"] < INT8_MIN_SAME_BIN
        or measured["same_gender"] < INT8_MIN_SAME_GENDER
        or measured["mean_age_gap"] > INT8_MAX_AGE_GAP
    ):
        raise LiteRTError(
            f"{out.name}: the int8 model disagrees with Keras on {measured['n']} validation faces "
            f"(same age group {measured['same_bin']:.0%}, same gender {measured['same_gender']:.0%}, "
            f"age gap {measured['mean_age_gap']:.2f} years); not written"
        )
    return write_twin(
        keras_path,
        keras_sha,
        "int8",
        data_bytes,
        mirror_views,
        calibration_faces=len(faces),
        agreement_with_keras={k: round(v, 4) for k, v in measured.items()},
    )


def write_twin(
    keras_path: Path, keras_sha: str, precision: str, data: bytes, mirror_views: bool, **facts: Any
) -> Path:
    """Write a checked twin's bytes beside ``keras_path`` (atomically) and record it in the sidecar
    under its precision's key, with the SHA-256 of both files and ``facts`` about its check."""
    import tensorflow as tf

    key, path_of = PRECISIONS[precision]
    out = path_of(keras_path)
    atomic.write_bytes(out, data)
    record = {
        "file": out.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "keras_file": keras_path.name,
        "keras_sha256": keras_sha,
        "mirror_views": mirror_views,
        **facts,
        "converter": f"tensorflow {tf.__version__}",
    }
    record_in_sidecar(keras_path, key, record)
    return out


def export(model_path: str | Path, tolerance: float = 1e-3) -> Path:
    """Write ``X.tflite`` beside ``X.keras`` (float32) and record both files in ``X.json``.

    The twin is checked against Keras on a probe batch first: a gap above ``tolerance`` raises
    :class:`LiteRTError` and leaves the old files alone.
    """
    keras_path, _ = model_and_sidecar(model_path)
    read_sidecar(keras_path)  # a model without a valid sidecar is refused before the slow conversion
    keras_sha = sha256(keras_path)
    keras_model = load_keras(keras_path)
    one_view, mirror_views = single_view(keras_model)
    data = convert(one_view)
    out = twin_path(keras_path)
    with tempfile.TemporaryDirectory(prefix="agelab-export-") as tmp:
        staged = Path(tmp) / out.name
        staged.write_bytes(data)
        lite = LiteRTModel(staged, mirror_views=mirror_views)
        gap = max_output_gap(keras_model, lite, probe_batch(lite.image_size))
    if gap > tolerance:
        raise LiteRTError(
            f"{out.name}: the converted model differs from Keras by {gap:.2g} (> {tolerance:g})"
        )
    return write_twin(keras_path, keras_sha, "float32", data, mirror_views, max_abs_gap=gap)


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agelab export",
        description="Export a saved model to LiteRT: writes X.tflite beside X.keras and records both in X.json. "
        "The Predict page, predict and evaluate then serve it with LiteRT.",
    )
    parser.add_argument("--model", required=True, help=MODEL_SPEC_HELP)
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also write X.int8.tflite (int8, calibrated on training-split faces), which then serves first",
    )
    parser.add_argument("--calibration", type=int, default=300, help="training faces to calibrate int8 on")
    parser.add_argument(
        "--data",
        default=None,
        help="the data for --int8, as train's data= takes it: a folder or several, comma-separated "
        "(default data/UTKFace)",
    )
    args = parser.parse_args(argv)
    if args.calibration < 1:
        parser.error(f"--calibration {args.calibration}: calibrate on at least 1 face (300 is the default)")
    start = time.perf_counter()
    try:
        out = export(args.model)
        int8 = export_int8(args.model, args.calibration, data=args.data) if args.int8 else None
    except (ModelError, LiteRTError, FileNotFoundError) as exc:
        print(f"agelab export: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a read-only folder, a full disk: the old files stay as they were
        print(f"agelab export: {atomic.why_not_written(exc.filename or args.model, exc)}", file=sys.stderr)
        return 1
    meta = read_sidecar(args.model)
    report: dict[str, Any] = {
        "tflite": str(out),
        "bytes": meta[RECORD_KEY]["bytes"],
        "max_abs_gap": meta[RECORD_KEY]["max_abs_gap"],
    }
    if int8 is not None:
        record = meta[INT8_RECORD_KEY]
        report.update(
            int8_tflite=str(int8), int8_bytes=record["bytes"], int8_agreement=record["agreement_with_keras"]
        )
    report["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
