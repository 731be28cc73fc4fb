"""A saved model's files: finding one from a spec, loading it, its sidecar, and the models there are.

A model is ``X.keras`` with its sidecar ``X.json`` and, optionally, its LiteRT twin ``X.tflite``
(the model contract in docs/architecture.md); a run folder holds ``model.keras`` and ``model.json``.
Every verb, page and bench script finds, loads and records models through here.

Nothing here imports Keras until a Keras model is loaded or saved: a model served by its LiteRT twin
never imports TensorFlow.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import agelab  # noqa: F401  (sets KERAS_HOME before keras is imported)
from agelab import atomic
from agelab.backends import BACKEND_HELP, BACKENDS, int8_twin_path, twin_path  # noqa: F401  (the table's own)
from agelab.bins import RENAMED_SCHEMES
from agelab.paths import models_dir, runs_dir
from agelab.schemas import sidecar_problems

DEFAULT_MODEL_NAME = "agelab-default.keras"
# The spec that names the default model (:func:`default_model`) wherever a model path is accepted.
DEFAULT_SPEC = "default"
# The shipped model for speed: fewer operations per face than the default, for slow machines.
FAST_MODEL_NAME = "agelab-fast.keras"
FAST_SPEC = "fast"
# What every consumer needs from a sidecar; the rest (model, age_head, crop, calibration, litert) is
# optional to them.
REQUIRED_KEYS = ("bins", "image_size")


class ModelError(ValueError):
    """A model that cannot be found or does not follow the model contract."""


# --------------------------------------------------------------------------- finding a model


# What every verb's --model accepts: the specs find_model resolves, said once.
MODEL_SPEC_HELP = (
    'a .keras file with its .json sidecar, a run folder, a run name, "default" (the most accurate shipped '
    'model) or "fast" (the fastest)'
)


def find_model(spec: str | Path) -> Path:
    """The ``.keras`` file that ``spec`` names.

    ``spec`` is ``"default"`` (:func:`default_model`), a ``.keras`` file, a run folder, the name of a
    run under the runs folder, or a ``.keras`` path without its suffix.
    """
    if str(spec) == DEFAULT_SPEC:
        default = default_model()
        if default is None:
            raise ModelError(f"no default model: none in {models_dir()} and no finished run in {runs_dir()}")
        spec = default
    elif str(spec) == FAST_SPEC:
        spec = models_dir() / FAST_MODEL_NAME
        if not spec.is_file():
            raise ModelError(f"no fast model: {spec} is missing (it ships with the repository; restore it)")
    spec = Path(spec)
    for candidate in (spec, runs_dir() / spec):
        if candidate.is_dir() and (candidate / "model.keras").is_file():
            return candidate / "model.keras"
        if candidate.is_file() and candidate.suffix == ".keras":
            return candidate
        if candidate.name and candidate.suffix != ".keras" and candidate.with_suffix(".keras").is_file():
            return candidate.with_suffix(".keras")
    if spec.is_dir():
        raise ModelError(f"{spec}: no model file model.keras (has the run finished?)")
    if spec.suffix == ".keras":
        raise ModelError(f"{spec}: no model file {spec.name}")
    raise ModelError(
        f"{spec}: give a run folder or a .keras file (with its .json sidecar), the name of a run "
        f"under {runs_dir()}, or {DEFAULT_SPEC!r}"
    )


def sidecar_path(model: str | Path) -> Path:
    """``X.json`` beside ``X.keras``."""
    return Path(model).with_suffix(".json")


def model_and_sidecar(spec: str | Path) -> tuple[Path, Path]:
    """The ``(X.keras, X.json)`` pair that ``spec`` names (:func:`find_model`); both must exist."""
    model = find_model(spec)
    sidecar = sidecar_path(model)
    if not sidecar.is_file():
        raise ModelError(f"{spec}: the model has no sidecar {sidecar.name} with its bins and image size")
    return model, sidecar


def model_stamp(spec: str | Path) -> float:
    """The latest change time of a model's files (``.keras``, sidecar, ``.tflite`` twins): a cache key
    that changes when any of them is rewritten."""
    model, sidecar = model_and_sidecar(spec)
    files = (model, sidecar, twin_path(model), int8_twin_path(model))
    return max(p.stat().st_mtime for p in files if p.is_file())


# --------------------------------------------------------------------------- the sidecar


def read_sidecar(spec: str | Path) -> dict[str, Any]:
    """The sidecar of the model ``spec`` names, checked to hold the keys every consumer needs."""
    _, sidecar = model_and_sidecar(spec)
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{sidecar}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{sidecar}: not a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ModelError(f"{sidecar}: the sidecar lacks {', '.join(missing)}")
    # A model saved before the bin schemes were renamed says "seed10": read it under today's name, so
    # that it compares equal to new models (ensembles, the Review page's scheme list).
    if isinstance(meta["bins"], str):
        meta["bins"] = RENAMED_SCHEMES.get(meta["bins"].strip(), meta["bins"])
    return meta


def checked_sidecar(meta: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """``meta`` when it can serve its model; else :class:`ModelError` naming the sidecar ``path`` and
    every problem (:func:`agelab.schemas.sidecar_problems`)."""
    problems = sidecar_problems(meta)
    if problems:
        raise ModelError(f"the sidecar {path} cannot serve its model: {'; '.join(problems)}")
    return meta


def record_in_sidecar(spec: str | Path, key: str, value: Any) -> Path:
    """Set ``key`` of the model's sidecar to ``value`` (atomically), keeping the rest; the sidecar's path."""
    _, sidecar = model_and_sidecar(spec)
    meta = read_sidecar(spec)
    meta[key] = value
    return atomic.write_json(sidecar, meta)


# --------------------------------------------------------------------------- loading and saving


def load_keras(path: str | Path) -> Any:
    """The Keras model in the ``.keras`` file ``path``, uncompiled; :class:`ModelError` says why not."""
    import keras

    # Ensembles hold agelab's mirror layer, and runs trained with soft_bins, a teacher or age ranges
    # hold its losses: Keras reads the loss even when not compiling.
    from agelab.custom_objects import CUSTOM_OBJECTS

    path = Path(path)
    if not zipfile.is_zipfile(path):
        # Keras says "File not found" for any file that is not a zip archive.
        raise ModelError(
            f"{path}: the model file is corrupt (not a .keras zip archive); retrain or re-copy it"
        )
    try:
        return keras.saving.load_model(path, custom_objects=CUSTOM_OBJECTS, compile=False)
    except Exception as exc:
        raise ModelError(f"{path}: Keras cannot load it ({type(exc).__name__}: {exc})") from None


def load_model(spec: str | Path) -> tuple[Any, dict[str, Any]]:
    """The Keras model that ``spec`` names and its sidecar."""
    model, _ = model_and_sidecar(spec)
    return load_keras(model), read_sidecar(model)


def save_model(model: Any, path: str | Path, sidecar: dict[str, Any]) -> Path:
    """Write ``X.keras`` and its ``X.json`` sidecar, each atomically; the ``.keras`` path."""
    path = Path(path)

    def write(tmp: Path) -> None:
        # Keras insists on the .keras suffix, so save beside the temp file and move it in.
        staged = tmp.with_name(tmp.name + ".keras")
        try:
            model.save(staged)
            staged.replace(tmp)
        finally:
            staged.unlink(missing_ok=True)

    atomic.write_with(path, write)
    atomic.write_json(sidecar_path(path), sidecar)
    return path


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
    summary: str = ""


def _info(name: str, path: Path, kind: str, metrics: dict[str, Any] | None) -> ModelInfo | None:
    try:
        _, sidecar = model_and_sidecar(path)
    except ModelError:
        return None
    # Listing reads the sidecar leniently: a model whose sidecar lacks a key is still listed, and
    # loading it says what is wrong.
    meta = atomic.read_cache_json(sidecar, {})
    if not isinstance(meta, dict):  # a sidecar that is not a JSON object: listed, and loading says why
        meta = {}
    return ModelInfo(
        name=name,
        path=path,
        kind=kind,
        metrics=metrics if metrics is not None else (meta.get("metrics") or {}),
        bins=meta.get("bins"),
        image_size=meta.get("image_size"),
        model=meta.get("model"),
        summary=str(meta.get("summary", "")),
    )


def available_models() -> list[ModelInfo]:
    """Finished runs (newest first), then ``.keras`` files under the models folder, with test metrics."""
    from agelab.runs import list_runs

    found: list[ModelInfo] = []
    for run in list_runs():
        if run.state != "finished":
            continue
        info = _info(f"run {run.path.name}", run.path, "run", dict(run.metrics or {}))
        if info is not None:
            found.append(info)
    folder = models_dir()
    if folder.is_dir():
        for path in sorted(folder.glob("*.keras")):
            info = _info(path.name, path, "file", None)
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
