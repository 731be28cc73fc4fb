"""LiteRT twins written: ``X.keras`` converted to ``X.tflite`` (float32) and, on request,
``X.int8.tflite``, each checked against Keras before it is written and recorded in the sidecar.

The conversion is ``model.export(format="tf_saved_model")``, then ``tf.lite.TFLiteConverter``. The
int8 twin (weights and activations in int8) is calibrated on training-split faces cropped as they
are served, and recorded under ``"litert_int8"`` with its measured agreement with Keras on
validation faces; docs/recipes.md has its speed and accuracy. Exporting imports TensorFlow;
serving (:mod:`agelab.litert_serving`) does not.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

import agelab  # noqa: F401  (sets KERAS_HOME before keras is imported)
from agelab import atomic
from agelab.backends import TWINS, int8_twin_path, twin_path
from agelab.ensemble import single_view
from agelab.litert_serving import OUTPUTS, LiteRTError, LiteRTModel, sha256
from agelab.model_files import ModelError, load_keras, model_and_sidecar, read_sidecar, record_in_sidecar

# The int8 twin is refused when it disagrees with Keras on validation faces more than this: a broken
# conversion, not quantization noise (the shipped model's twin: 92 % same group, 99.7 % same gender,
# 0.87 years).
INT8_MIN_SAME_BIN = 0.75
INT8_MIN_SAME_GENDER = 0.95
INT8_MAX_AGE_GAP = 2.0
QUANTIZATIONS = ("none", "dynamic", "float16", "int8")


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
    from agelab.data_sources import load_data
    from agelab.images import load_image
    from agelab.model_inputs import model_inputs

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
    frame = model_inputs(frame, meta, log=lambda _: None)
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

    key, out = TWINS[precision].record_key, TWINS[precision].path(keras_path)
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
