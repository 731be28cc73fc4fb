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


@pytest.mark.xfail(
    strict=True,
    reason="known miss (issue 10's smoke test): the shipped model calls the astronaut a teenage (18) man, "
    "53 % and flagged as a close call (float32 twin: 64 %); "
    "strict, so this turns into a failure to update once a model gets her right",
)
def test_the_astronaut_is_an_adult_woman(shipped, detector):
    """Eileen Collins, about 42 in the photo: a studio portrait with short hair."""
    (face,) = predict_image(skimage.data.astronaut(), detector, shipped)
    assert face.prediction.gender == "female"
    assert shipped.scheme.bin_of(face.prediction.age) >= shipped.scheme.bin_of(25)


def test_the_cameraman_is_found_and_flagged_for_his_lowered_head(shipped, detector):
    """The cameraman looks down into his camera: found, an adult, and said to be posed unlike training."""
    image = np.repeat(skimage.data.camera()[:, :, None], 3, axis=2)
    (face,) = predict_image(image, detector, shipped)
    assert face.prediction.age >= 19
    assert any("turned or partly hidden" in r for r in face.prediction.reasons)
