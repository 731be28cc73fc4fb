"""Several trained models, and optionally each one's mirror view, averaged inside one Keras model.

The average lives in the graph, so the result is an ordinary agelab model: one ``.keras`` file with its
sidecar, one LiteRT twin, served by ``Predictor`` like any other. Averaging the views of two models
trained with different seeds lowered the validation MAE and raised within-one and gender accuracy
(docs/recipes.md), at two to four times the prediction cost of one model (still about a millisecond
per face through LiteRT).

    python -m agelab ensemble --models runs/a-1 runs/b-1 --flip --out models/agelab-default.keras
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import agelab  # noqa: F401  (sets KERAS_HOME before keras is imported)

import keras  # noqa: E402  isort: skip

# Sidecar keys every member must share: what the model takes and what its outputs mean. The input
# size may differ: the ensemble takes the largest, and shrinks it in the graph for smaller members.
SHARED_KEYS = ("bins", "crop", "age_head")


@keras.saving.register_keras_serializable(package="agelab")
class MirrorImages(keras.layers.Layer):
    """Images flipped left to right (a batch of ``(N, H, W, C)``)."""

    def call(self, images):
        return keras.ops.flip(images, axis=2)


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


def build(model_paths: list[str | Path], out: str | Path, flip: bool = False) -> Path:
    """Load the members, check they agree, save the ensemble with its sidecar at ``out``."""
    from agelab.model_files import ModelError, find_model, load_model, save_model

    members, sidecars = [], []
    for path in model_paths:
        keras_file = find_model(path)
        model, sidecar = load_model(keras_file)
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


def cli(argv: list[str]) -> int:
    from agelab.model_files import MODEL_SPEC_HELP

    parser = argparse.ArgumentParser(
        prog="python -m agelab ensemble",
        description="Average several trained models (and, with --flip, their mirror views) into one "
        "model; then calibrate it on the validation split and export its LiteRT twin.",
    )
    parser.add_argument("--models", nargs="+", required=True, help=f"the members, each {MODEL_SPEC_HELP}")
    parser.add_argument("--out", required=True, help="the .keras file to write (a sidecar goes beside it)")
    parser.add_argument("--flip", action="store_true", help="also average each model's mirror view")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also export the int8 LiteRT twin (python -m agelab export --int8)",
    )
    parser.add_argument(
        "--data", default=None, help="the UTKFace folder to calibrate on (default data/UTKFace)"
    )
    args = parser.parse_args(argv)
    if Path(args.out).suffix != ".keras":
        parser.error(f"--out {args.out!r}: give a .keras file name")
    from agelab import calibration, litert
    from agelab.model_files import ModelError

    try:
        out = build(args.models, args.out, args.flip)
        result = calibration.calibrate_model(out, args.data)
        twin = litert.export(out)
        int8 = litert.export_int8(out, data=args.data) if args.int8 else None
    except (ModelError, ValueError, FileNotFoundError, litert.LiteRTError) as err:
        print(f"agelab ensemble: {err}", file=sys.stderr)
        return 1
    report = {"model": str(out), "litert": str(twin), "calibration": result}
    if int8 is not None:
        report["litert_int8"] = str(int8)
    print(json.dumps(report))
    return 0
