"""Scoring image files with a predictor into a predictions table, in batches, skipping files that
cannot be decoded.

Its own module, not the verb's, because two callers need it: the ``evaluate`` verb and the cached
default-model table of :mod:`agelab.evaluation.sources`, which the verb itself imports.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from agelab import model_inputs
from agelab.bins import BinScheme
from agelab.evaluation.predictions import joined_outputs, predictions_frame


def predict_files(
    predictor: Any,
    items: Iterable[tuple[str, Any]],
    native: BinScheme,
    scheme: BinScheme,
    batch_size: int = 64,
    progress: Any = None,
    total: int = 0,
    detect: bool = False,
) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """Predict ``(path, labels)`` pairs in batches; files that cannot be decoded are skipped.

    With ``detect``, each image's input is its labelled face's aligned crop, exactly as training
    made it (:func:`agelab.crop_cache.labelled_face_crop`; column ``face_found`` says whether the
    detector saw the face); without, the whole image is the model's input.
    """
    from agelab.crop_cache import labelled_face_crop
    from agelab.faces import FaceDetector
    from agelab.images import ImageError, load_image

    records: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    outputs: dict[str, list[np.ndarray]] = {"age_bin": [], "age": [], "prob_female": []}
    batch: list[np.ndarray] = []
    batch_records: list[dict[str, Any]] = []

    to_batch = getattr(predictor, "to_batch", None)

    def flush() -> None:
        if not batch:
            return
        if to_batch is not None:
            result = predictor.predict_batch(np.stack(batch))
        else:
            result = predictor.predict_crops(batch)
        for key in outputs:
            outputs[key].append(np.asarray(result[key], dtype=float).reshape(len(batch), -1))
        records.extend(batch_records)
        batch.clear()
        batch_records.clear()

    with contextlib.ExitStack() as stack:
        detector = stack.enter_context(FaceDetector()) if detect else None
        for i, (path, labels) in enumerate(items):
            try:
                image = load_image(path)
            except ImageError as err:
                skipped.append({"file": Path(path).name, "kind": "unreadable", "reason": str(err)})
                continue
            found = None
            if detector is not None:
                image, found = labelled_face_crop(image, detector, predictor.image_size)
            # Resized as it is read: a batch of full-resolution photos could take gigabytes.
            batch.append(to_batch([image])[0] if to_batch is not None else image)
            del image
            batch_records.append(
                {
                    "path": str(Path(path).resolve()),
                    "age": labels.age,
                    "gender": labels.gender,
                    "race": labels.race,
                    "face_found": found,
                }
            )
            if len(batch) >= batch_size:
                flush()
                if progress:
                    progress(i + 1, total)
        flush()
    if progress:
        progress(total, total)
    return predictions_frame(records, joined_outputs(outputs, native), native, scheme), skipped


def uses_aligned_crops(predictor: Any) -> bool:
    """Whether the model was trained on the face detector's aligned crops (its sidecar's ``crop``)."""
    return model_inputs.uses_aligned_crops(getattr(predictor, "meta", {}))


def predict_frame(
    predictor: Any, frame: pd.DataFrame, batch_size: int = 64
) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """The labelled images of a dataset frame (``path``, ``age``, ``gender``, ``race``; a split of
    :func:`agelab.saved_split.load_dataset`) through :func:`predict_files` in the model's own scheme, as
    ``evaluate`` scores a folder of them: aligned crops for a model trained on them."""
    from agelab.bins import get_scheme
    from agelab.data import Labels

    scheme = get_scheme(predictor.scheme)
    items = [(r.path, Labels(r.age, r.gender, r.race, "")) for r in frame.itertuples()]
    return predict_files(predictor, items, scheme, scheme, batch_size, detect=uses_aligned_crops(predictor))
