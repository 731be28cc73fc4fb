"""One answer per photo at any resolution: 20 real photos from outside UTKFace (aaf-dev: loosely cropped,
with background), each at half, its own, four and twelve times its size, through the served path
(the default model, the default detector, the aligned crop).

The photos are the first 20 of aaf-dev sorted by name: a fixed rule, not a choice. Measured on them
(the int8 default model): before the crop and the detector's inputs were resampled from the original
pixels by area averaging, 15 of 20 kept their age group and gender at all four sizes and the model's
input moved by a median 3.6 grey levels between 1x and 4x/12x (the astronaut's by 10.8); after, 18
of 20 and 1.1 (astronaut 3.9).
"""

from __future__ import annotations

import numpy as np
import pytest

from agelab.crop import model_input
from agelab.faces import FaceDetector
from agelab.images import load_image
from agelab.model_files import ModelError
from agelab.predictor import load_predictor, predict_image
from tests.real_data import SHARED, require

SCALES = (0.5, 1, 4, 12)
PHOTOS = 20
# Two groups (or genders) the model splits a face between are a tie, not a changed answer: both
# hold at least this probability at both sizes. The pixel-level agreement is held by the crop test.
SPLIT = 0.3
# A gender the model gives at most this probability is a coin flip at that size.
COIN_FLIP = 0.6


def resized(image: np.ndarray, scale: float) -> np.ndarray:
    """The photo as a user would have it at another size: area-averaged down, bicubic up."""
    import cv2

    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=interpolation)


@pytest.fixture(scope="module")
def answers():
    """For each photo and size: the served prediction, the model's full outputs and its input."""
    folder = require(SHARED / "data" / "aaf-dev", "aaf-dev photos (outside UTKFace)")
    try:
        predictor = load_predictor("default")
    except ModelError as exc:
        pytest.skip(str(exc))
    out = {}
    with FaceDetector() as detector:
        for path in sorted(folder.glob("*.jpg"))[:PHOTOS]:
            image = load_image(path)
            for scale in SCALES:
                faces = predict_image(resized(image, scale), detector, predictor)
                assert faces, f"{path.name} at {scale}x: no face found"
                face = max(faces, key=lambda f: f.box[2] * f.box[3])  # one person per photo
                outputs = predictor.predict_crops([face.crop])
                out[path.name, scale] = (
                    face.prediction,
                    outputs["age_bin"][0],
                    model_input(face.crop, predictor.image_size).astype(np.int16),
                )
    return out


def _names(answers) -> list[str]:
    return sorted({name for name, _ in answers})


def test_each_photo_keeps_its_age_group_and_gender_at_half_4x_and_12x_its_size(answers):
    changed, kept = [], 0
    for name in _names(answers):
        ref, ref_probs, _ = answers[name, 1]
        same = True
        for scale in SCALES:
            got, probs, _ = answers[name, scale]
            if got.bin != ref.bin:
                same = False
                # Allowed only as a two-way split the model makes at both sizes (e.g. toddler or
                # child for a 3-year-old): the astronaut's teenager-vs-adult was no such split.
                pair = [ref.bin, got.bin]
                if abs(ref.bin - got.bin) > 1 or min(ref_probs[pair].min(), probs[pair].min()) < SPLIT:
                    changed.append(
                        f"{name} {scale}x: {got.bin_label} {got.bin_prob:.0%}, 1x {ref.bin_label} {ref.bin_prob:.0%}"
                    )
            if got.gender != ref.gender:
                same = False
                if max(got.gender_prob, ref.gender_prob) > COIN_FLIP:
                    changed.append(
                        f"{name} {scale}x: {got.gender} {got.gender_prob:.0%}, 1x {ref.gender} {ref.gender_prob:.0%}"
                    )
        kept += same
    assert not changed, changed
    # Measured 18 of 20 (the other two are the splits above); 15 before the fix.
    assert kept >= 17, kept


def test_the_model_sees_the_same_face_at_1x_4x_and_12x(answers):
    """The cause, held directly: enlarging a photo adds no detail, so the aligned crop the model
    sees must not change with it (mean absolute difference of the model inputs, grey levels)."""
    drift = {
        name: max(np.abs(answers[name, s][2] - answers[name, 1][2]).mean() for s in (4, 12))
        for name in _names(answers)
    }
    # Measured after: median 1.1, largest 3.8. Before: median 3.6, largest 10.7 (five over 6).
    assert np.median(list(drift.values())) < 2.0, drift
    assert max(drift.values()) < 6.0, drift
