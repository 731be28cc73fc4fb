"""The shipped model on photos that are not UTKFace: scikit-image's portraits, through the predict path."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from agelab.faces import FaceDetector
from agelab.model_files import default_model
from agelab.predictor import load_predictor, predict_image


@pytest.fixture(scope="module")
def shipped():
    model = default_model()
    if model is None:
        pytest.skip("no shipped model in models/")
    return load_predictor(model)


@pytest.fixture(scope="module")
def detector():
    with FaceDetector() as d:
        yield d


@pytest.mark.parametrize("scale", [0.5, 1, 4, 12])
def test_the_astronaut_is_an_adult_woman_at_any_size(shipped, detector, scale):
    """Eileen Collins, about 42 in the photo: a studio portrait with short hair; the same answer from
    the photo at half, its own, four and twelve times its size."""
    import cv2

    image = skimage.data.astronaut()
    resized = cv2.resize(
        image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    )
    (face,) = predict_image(resized, detector, shipped)
    assert face.prediction.gender == "female"
    adult = shipped.scheme.bin_of(25)
    assert face.prediction.bin >= adult and shipped.scheme.bin_of(face.prediction.age) >= adult


def test_the_cameraman_is_found_and_flagged_for_his_lowered_head(shipped, detector):
    """The cameraman looks down into his camera: found, an adult, and said to be posed unlike training."""
    image = np.repeat(skimage.data.camera()[:, :, None], 3, axis=2)
    (face,) = predict_image(image, detector, shipped)
    assert face.prediction.age >= 19
    assert any("turned or partly hidden" in r for r in face.prediction.reasons)
