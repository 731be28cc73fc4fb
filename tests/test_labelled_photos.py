"""Labelled photos from outside UTKFace get the crop training and ``evaluate`` make, face or no face."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from agelab.crop_cache import labelled_face_crop
from agelab.faces import FaceDetector
from agelab.images import load_image
from agelab.labelled_photos import score_photos
from agelab.predictor import load_predictor
from tests.predict_helpers import detector_models_dir, real_faces, save_contract_model

# A real photo without a face (a temple), shipped with scikit-learn.
NO_FACE = Path(__import__("sklearn").__file__).parent / "datasets" / "images" / "china.jpg"


def test_every_photo_gets_the_training_crop_and_no_face_is_counted(utkface_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("AGELAB_FACE_MODEL", str(detector_models_dir()))
    predictor = load_predictor(save_contract_model(tmp_path / "model"))
    shutil.copy(real_faces(utkface_dir, 1, step=1, start=3000)[0], tmp_path / "face.jpg")
    shutil.copy(NO_FACE, tmp_path / "temple.jpg")
    labels = pd.DataFrame(
        {
            "file": ["face.jpg", "temple.jpg"],
            "age_low": [20.0, 30.0],
            "age_high": [29.0, 39.0],
            "gender": [1, 0],
        }
    )
    seen: list[np.ndarray] = []
    predict_crops = predictor.predict_crops
    with FaceDetector() as detector:
        monkeypatch.setattr(
            predictor, "predict_crops", lambda crops: seen.extend(crops) or predict_crops(crops)
        )
        table, skipped = score_photos(predictor, tmp_path, labels, detector)
        expected = [
            labelled_face_crop(load_image(tmp_path / f), detector, predictor.image_size) for f in labels.file
        ]
    assert skipped == []
    assert table["face_found"].tolist() == [found for _, found in expected] == [True, False]
    assert len(seen) == 2
    for crop, (want, _) in zip(seen, expected):
        assert crop.shape == want.shape and np.array_equal(crop, want)
