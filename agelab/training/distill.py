"""Distillation: a run that learns a teacher model's predictions beside the labels (Hinton et al.,
2015; with a teacher of the student's own kind, "born-again networks", Furlanello et al., 2018).

Why it was tried, and what it measured: docs/recipes.md, "Distillation from the three-member
ensemble".

Each head's target is ``(1 - w) * label + w * teacher`` (``w`` is ``teacher_weight``): the bin head
against the mixed distribution (the label side spread by ``soft_bins`` as usual), the gender head
against the mixed probability, the years head against the mixed age. The teacher's probabilities are
its calibrated ones (its temperatures soften them), on the aligned crop of its own input size.

The labels are packed so each head keeps one tensor: ``age_bin`` rows are ``[bin, q_1 .. q_K]`` and
``gender`` rows ``[label, q]``; the losses read the targets ``q`` and the accuracy metrics the label,
so the history's ``acc`` columns mean what they mean in any run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from agelab.bins import BinScheme
from agelab.custom_objects import (
    PackedBinaryCrossentropy,
    PackedCrossentropy,
    packed_bin_accuracy,
    packed_gender_accuracy,
    soft_bin_targets,
)
from agelab.training import mixup
from agelab.training.errors import RunError

import keras  # noqa: E402  isort: skip  (after agelab, which sets KERAS_HOME)

TEACHER_FEMALE = "teacher_female"
TEACHER_AGE = "teacher_age"
BATCH = 64


def teacher_bin_columns(num_bins: int) -> list[str]:
    return [f"teacher_bin_{i}" for i in range(num_bins)]


def teacher_predictions(
    teacher: str | Path, frame: pd.DataFrame, scheme: BinScheme, log: Callable[[str], None] = print
) -> pd.DataFrame:
    """``frame`` with the teacher's calibrated predictions as columns (:func:`teacher_bin_columns`,
    :data:`TEACHER_FEMALE`, :data:`TEACHER_AGE`), each image predicted once, on the crop the
    teacher is served (its aligned crop at its own input size, or the file as it is)."""
    from agelab.images import ImageError, load_image
    from agelab.model_files import ModelError
    from agelab.model_inputs import model_inputs
    from agelab.predictor import Predictor

    try:
        # Float32: the teacher's targets should not carry quantization noise.
        predictor = Predictor(teacher, backend="litert")
    except (ModelError, FileNotFoundError, ValueError) as err:
        raise RunError(f"teacher={teacher!r}: {err}") from None
    if predictor.scheme.spec != scheme.spec:
        raise RunError(
            f"teacher={teacher!r} predicts bins {predictor.scheme.spec!r}, the run {scheme.spec!r}: "
            "the teacher must use the run's bins"
        )
    images = frame[["path"]].drop_duplicates().reset_index(drop=True)
    images = model_inputs(images, predictor.meta, log)
    log(f"teacher {predictor.model_path} ({predictor.backend_note}) on {len(images):,} training images")
    probs, female, age = [], [], []
    inputs = images["input"].astype(str).tolist()
    for start in range(0, len(inputs), BATCH):
        try:
            crops = [load_image(p) for p in inputs[start : start + BATCH]]
        except ImageError as err:
            raise RunError(f"teacher input: {err}") from None
        out = predictor.predict_crops(crops)
        probs.append(out["age_bin"])
        female.append(out["prob_female"])
        age.append(out["age"])
    columns = pd.DataFrame(np.concatenate(probs), columns=teacher_bin_columns(scheme.num_bins))
    columns[TEACHER_FEMALE] = np.concatenate(female)
    columns[TEACHER_AGE] = np.concatenate(age)
    columns["path"] = images["path"].to_numpy()
    merged = frame.merge(columns, on="path", how="left", validate="many_to_one")
    lost = merged[TEACHER_FEMALE].isna()
    if lost.any():
        raise RunError(
            f"teacher={teacher!r} could not read {merged.loc[lost, 'path'].iloc[0]} ({lost.sum()} images)"
        )
    return merged


def has_teacher(frame: pd.DataFrame) -> bool:
    return TEACHER_FEMALE in frame


def packed_labels(
    frame: pd.DataFrame, scheme: BinScheme, sigma: float, weight: float
) -> dict[str, np.ndarray]:
    """The packed targets of a distilled run's split. A split without the teacher's columns (val,
    test) gets its labels alone, so its loss is the ordinary one."""
    bins = scheme.bin_of(frame["age"].to_numpy()).astype("int32")
    gender = frame["gender"].to_numpy().astype("float32")
    age = frame["age"].to_numpy().astype("float32")
    target_bins = soft_bin_targets(scheme.num_bins, sigma)[bins]
    target_gender, target_age = gender, age
    if has_teacher(frame):
        teacher_bins = frame[teacher_bin_columns(scheme.num_bins)].to_numpy("float32")
        target_bins = (1 - weight) * target_bins + weight * teacher_bins
        target_gender = (1 - weight) * gender + weight * frame[TEACHER_FEMALE].to_numpy("float32")
        target_age = (1 - weight) * age + weight * frame[TEACHER_AGE].to_numpy("float32")
    return {
        "age_bin": np.column_stack([bins, target_bins]).astype("float32"),
        "age": target_age[:, None].astype("float32"),
        "gender": np.column_stack([gender, target_gender]).astype("float32"),
    }


def uses_packed_targets(config: dict[str, Any]) -> bool:
    """Whether a run's heads learn packed targets: a teacher's blend, or mixup's
    (:mod:`agelab.training.mixup`)."""
    return bool(config.get("teacher")) or mixup.enabled(config)


def training_labels(
    frame: pd.DataFrame, scheme: BinScheme, config: dict[str, Any], ranges: bool = False
) -> dict[str, np.ndarray]:
    """A split's labels as the run's losses take them: packed when the run has a teacher or mixup, as
    intervals when its data has age ranges (:mod:`agelab.training.intervals`)."""
    from agelab.pipeline import labels_of
    from agelab.training.intervals import interval_labels

    if ranges:
        return interval_labels(frame, scheme)
    if not uses_packed_targets(config):
        return labels_of(frame, scheme)
    return packed_labels(frame, scheme, config.get("soft_bins", 0.0), config["teacher_weight"])


def losses_and_metrics() -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """``compile()``'s ``loss`` and ``metrics`` for packed labels (the metrics under the usual names)."""
    losses = {
        "age_bin": PackedCrossentropy(name="packed_crossentropy"),
        "age": keras.losses.MeanAbsoluteError(),
        "gender": PackedBinaryCrossentropy(name="packed_binary_crossentropy"),
    }
    metrics = {
        "age_bin": [keras.metrics.MeanMetricWrapper(packed_bin_accuracy, name="acc")],
        "age": [keras.metrics.MeanAbsoluteError(name="mae")],
        "gender": [keras.metrics.MeanMetricWrapper(packed_gender_accuracy, name="acc")],
    }
    return losses, metrics
