"""Scoring on labelled photos from outside UTKFace: a folder of images and a CSV
``file,age_low,age_high,gender`` (an exact age has ``age_low == age_high``; gender ``female``/``male``
or ``1``/``0``). Each photo goes through the face detector, the aligned crop and the model as a labelled
UTKFace image does in training and ``evaluate`` (:mod:`agelab.crop_cache`): the largest face is the
labelled person's, and a photo without one is placed on the template whole.

The result follows the predictions contract (docs/architecture.md), so every metric, slice and
interval of :mod:`agelab.evaluation` applies. ``age`` is the point of the labelled range nearest to
the prediction, so the age error is the distance to the nearest bound (zero inside the range).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from agelab.bins import BinScheme
from agelab.labels_csv import LabelsError, read_labels

__all__ = ["LabelsError", "read_labels", "score_photos"]


def score_photos(
    predictor: Any,
    folder: str | Path,
    labels: pd.DataFrame,
    detector: Any,
    min_score: float = 0.5,
) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """A predictions table for the labelled photos, and the files skipped (missing, unreadable).

    Each photo's input is its labelled face's crop as training and ``evaluate`` make it
    (:func:`agelab.crop.labelled_crop`): where the detector finds no face, the photo is placed
    on the template as a crop, and marked ``face_found = False``.
    """
    from agelab.crop import clip_box, labelled_crop
    from agelab.crop_cache import labelled_face
    from agelab.evaluation.predictions import joined_outputs, predictions_frame
    from agelab.images import ImageError, load_image
    from agelab.uncertainty import framing_reasons

    scheme: BinScheme = predictor.scheme
    records: list[dict[str, Any]] = []
    ranges: list[dict[str, Any]] = []
    outputs: dict[str, list[np.ndarray]] = {"age_bin": [], "age": [], "prob_female": []}
    skipped: list[dict[str, str]] = []
    for label in labels.itertuples():
        path = Path(folder) / label.file
        try:
            image = load_image(path)
        except ImageError as err:
            skipped.append({"file": label.file, "kind": "unreadable", "reason": str(err)})
            continue
        face = labelled_face(image, detector, min_score)
        height, width = image.shape[:2]
        result = predictor.predict_crops(
            [labelled_crop(image, None if face is None else face[2], predictor.image_size)]
        )
        framing = [] if face is None else framing_reasons(clip_box(face[0], width, height), face[2])
        p = predictor.describe(result, 0, framing)
        for key in outputs:
            outputs[key].append(np.asarray(result[key], dtype=float).reshape(1, -1))
        # The truth is the point of the labelled range nearest to the prediction.
        nearest = float(np.clip(p.age, label.age_low, label.age_high))
        records.append(
            {
                "path": str(path.resolve()),
                "age": nearest,
                "gender": label.gender,
                "race": -1,
                "face_found": face is not None,
            }
        )
        ranges.append({"age_low": label.age_low, "age_high": label.age_high, "uncertain": p.uncertain})
    table = predictions_frame(records, joined_outputs(outputs, scheme), scheme)
    return table.join(pd.DataFrame(ranges, columns=["age_low", "age_high", "uncertain"])), skipped
