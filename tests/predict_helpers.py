"""Real inputs for the predict tests: a small contract-following Keras model, and real face images."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from tests.real_data import find_detector_models, require

IMAGE_SIZE = 64


def detector_models_dir() -> Path:
    """The folder holding the MediaPipe detector models; the test is skipped when there is none."""
    return require(find_detector_models(), "MediaPipe face detector model (models/, ../shared/mediapipe)")


def save_contract_model(
    folder: Path, stem: str = "model", bins: str = "groups10", seed: int = 0, image_size: int = IMAGE_SIZE
) -> Path:
    """Build and save a small functional model that follows the model contract; return the .keras path.

    RGB float32 0-255 in, a dict of ``age_bin`` (softmax), ``age`` and ``gender`` (sigmoid) out.
    """
    import keras

    import agelab  # noqa: F401
    from agelab.bins import get_scheme

    keras.utils.set_random_seed(seed)
    k = get_scheme(bins).num_bins
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = {
        "age_bin": keras.layers.Dense(k, activation="softmax", name="age_bin")(x),
        "age": keras.layers.Dense(1, name="age")(x),
        "gender": keras.layers.Dense(1, activation="sigmoid", name="gender")(x),
    }
    model = keras.Model(inputs, outputs)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.keras"
    model.save(path)
    sidecar = {"bins": bins, "image_size": image_size, "model": "tiny_test_cnn", "age_head": "regression"}
    (folder / f"{stem}.json").write_text(json.dumps(sidecar))
    return path


def real_faces(utkface_dir: Path, count: int, step: int = 97, start: int = 0) -> list[Path]:
    names = sorted(n for n in os.listdir(utkface_dir) if n.endswith(".jpg.chip.jpg"))
    return [utkface_dir / n for n in names[start::step][:count]]


def face_canvas(
    faces: list[Path], size: int = 180, gap: int = 220, background: int = 90
) -> tuple[bytes, list]:
    """A JPEG of several real faces pasted in a row on a grey canvas, and where each was pasted."""
    width = gap * len(faces) + 80
    canvas = Image.new("RGB", (width, size + 200), (background,) * 3)
    placed = []
    for i, path in enumerate(faces):
        face = Image.open(path).convert("RGB").resize((size, size))
        x, y = 40 + i * gap, 100
        canvas.paste(face, (x, y))
        placed.append((x, y, size, size))
    buffer = io.BytesIO()
    canvas.save(buffer, "JPEG", quality=92)
    return buffer.getvalue(), placed


def rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))
