"""Several trained models, and optionally each one's mirror view, averaged inside one Keras model.

The average lives in the graph, so the result is an ordinary agelab model: one ``.keras`` file with its
sidecar, one LiteRT twin, served by ``Predictor`` like any other. Averaging the views of two models
trained with different seeds lowered the validation MAE and raised within-one and gender accuracy
(docs/recipes.md), at two to four times the prediction cost of one model (still about a millisecond
per face through LiteRT).

    python -m agelab ensemble --models runs/a-1 runs/b-1 --flip --out models/agelab-default.keras
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import agelab  # noqa: F401  (sets KERAS_HOME before keras is imported)
from agelab.custom_objects import MirrorImages

import keras  # noqa: E402  isort: skip

# Sidecar keys every member must share: what the model takes and what its outputs mean. The input
# size may differ: the ensemble takes the largest, and shrinks it in the graph for smaller members.
SHARED_KEYS = ("bins", "crop", "age_head")


def create_ensemble(members: list[keras.Model], flip: bool = False, name: str = "ensemble") -> keras.Model:
    """One model whose outputs (``age_bin``, ``age``, ``gender``) are the mean over ``members`` and,
    with ``flip``, over each member's view of the mirrored image.

    It takes the largest member's input size; a smaller member sees the image shrunk to its own size
    (bilinear, in the graph), so members trained at different sizes can be averaged."""
    if not members:
        raise ValueError("an ensemble needs at least one model")
    size = max(int(member.input_shape[1]) for member in members)
    images = keras.Input(shape=(size, size, members[0].input_shape[3]), name="images")
    views = [images, MirrorImages(name="mirror")(images)] if flip else [images]
    resized: dict[int, list[Any]] = {size: views}
    outputs: dict[str, list[Any]] = {}
    for i, member in enumerate(members):
        member.name = f"member_{i}"  # nested models need distinct names
        side = int(member.input_shape[1])
        if side not in resized:
            shrink = keras.layers.Resizing(side, side, interpolation="bilinear", name=f"to_{side}px")
            resized[side] = [shrink(view) for view in views]
        for view in resized[side]:
            for key, value in member(view, training=False).items():
                outputs.setdefault(key, []).append(value)
    averaged = {
        key: values[0] if len(values) == 1 else keras.layers.Average(name=key)(values)
        for key, values in outputs.items()
    }
    return keras.Model(images, averaged, name=name)


def single_view(keras_model: Any) -> tuple[Any, bool]:
    """The model without its in-graph mirror view (:func:`create_ensemble` over the
    same members, sharing their weights), and whether it had one. The twin of a mirror-averaged model
    is this one view: serving sends the image and its mirror as one batch, or one view alone."""
    if not any(isinstance(layer, MirrorImages) for layer in keras_model.layers):
        return keras_model, False
    members = [layer for layer in keras_model.layers if isinstance(layer, keras.Model)]
    return create_ensemble(members, flip=False), True


OUTPUTS = ("age_bin", "age", "gender")


def check_outputs(model: keras.Model, path: Path) -> None:
    """Refuse a model without agelab's outputs (a plain Keras model), naming its file."""
    import numpy as np

    from agelab.model_files import ModelError

    shape = model.input_shape if isinstance(model.input_shape, tuple) else None
    if not shape or len(shape) != 4 or None in shape[1:]:
        raise ModelError(f"{path} is not an agelab model: it does not take (size, size, 3) images")
    out = model(np.zeros((1, *shape[1:]), "float32"), training=False)
    if not isinstance(out, dict) or any(key not in out for key in OUTPUTS):
        got = sorted(out) if isinstance(out, dict) else f"one {type(out).__name__}"
        raise ModelError(
            f"{path} is not an agelab model: it returns {got}, not {', '.join(OUTPUTS)}; give models that"
            " `python -m agelab train` saved"
        )


def build(model_paths: list[str | Path], out: str | Path, flip: bool = False) -> Path:
    """Load the members, check they agree, save the ensemble with its sidecar at ``out``."""
    from agelab.model_files import ModelError, find_model, load_model, save_model

    members, sidecars = [], []
    for path in model_paths:
        keras_file = find_model(path)
        model, sidecar = load_model(keras_file)
        check_outputs(model, keras_file)
        inner = [layer for layer in model.layers if isinstance(layer, keras.Model)]
        if sidecar.get("ensemble") and inner:
            # An ensemble given as a member contributes its own members (and this ensemble's
            # --flip decides the mirror views), so no model is averaged with itself twice.
            recorded = sidecar["ensemble"].get("members") or [{} for _ in inner]
            for layer, record in zip(inner, recorded):
                members.append(layer)
                sidecars.append({**sidecar, **record, "path": record.get("path", str(keras_file))})
            continue
        members.append(model)
        sidecars.append({**sidecar, "path": str(keras_file)})
    for key in SHARED_KEYS:
        values = {json.dumps(s.get(key)) for s in sidecars}
        if len(values) > 1:
            raise ModelError(
                f"the models disagree on {key}: {', '.join(sorted(values))}; combine only like models"
            )
    first = sidecars[0]
    sidecar = {
        key: first[key]
        for key in ("bins", "bin_labels", "model", "alpha", "age_head", "crop")
        if key in first
    }
    sidecar["image_size"] = max(int(s["image_size"]) for s in sidecars)
    sidecar["ensemble"] = {
        "members": [
            {k: s.get(k) for k in ("path", "run", "image_size", "kept_epoch", "best_epoch")} for s in sidecars
        ],
        "flip": flip,
    }
    return save_model(create_ensemble(members, flip), out, sidecar)


def install(staged: Path, out: Path) -> dict[str, Path]:
    """Move a staged model's files onto ``out`` (twins, then the ``.keras``, then its sidecar, so a
    reader never pairs the new sidecar with an old file); an old twin the new model lacks is removed,
    as it would be stale. The installed files by role."""
    from agelab.model_files import int8_twin_path, sidecar_path, twin_path

    installed = {}
    for role, path_of in (("litert_int8", int8_twin_path), ("litert", twin_path), ("model", Path)):
        source, target = path_of(staged), path_of(out)
        if source.is_file():
            os.replace(source, target)
            installed[role] = target
        elif role != "model":
            target.unlink(missing_ok=True)
    os.replace(sidecar_path(staged), sidecar_path(out))
    return installed
