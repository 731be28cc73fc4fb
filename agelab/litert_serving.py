"""LiteRT (TFLite) twins served: :class:`LiteRTModel`, the interpreter that runs one, and
:func:`load_twin`, which lets a twin serve only when its sidecar record matches both files.

Every ``X.keras`` can have twins beside it (:mod:`agelab.backends`: ``X.tflite``, ``X.int8.tflite``),
written by :mod:`agelab.litert_export`. Its sidecar ``X.json`` records each under its key: the
twin's name and SHA-256, and the SHA-256 of the ``.keras`` it was converted from, so a retrained
``.keras`` never runs with a stale twin.

The runtime is ``ai-edge-litert`` (Google's maintained LiteRT package): ``tf.lite.Interpreter`` warns
that it is deprecated in favour of it, and MediaPipe runs only its own task graphs. Serving needs no
TensorFlow import.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from agelab.backends import TWINS

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


class LiteRTError(RuntimeError):
    """A ``.tflite`` twin that cannot serve its model: missing record, stale, corrupt or mismatched."""


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    twin = TWINS[precision]
    key, path = twin.record_key, twin.path(model_path)
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
