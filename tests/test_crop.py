"""The one crop: serving and training feed the model the same pixels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from agelab.crop import (
    CROP_SIZE,
    DEFAULT_MARGIN,
    TEMPLATE,
    align_face,
    alignment_residual,
    crop_face,
    model_input,
    roll_degrees,
    similarity_transform,
)
from agelab.crop_cache import aligned_inputs
from agelab.faces import FaceDetector
from agelab.images import load_image
from tests.predict_helpers import real_faces


@pytest.fixture(scope="module")
def detector():
    with FaceDetector() as d:
        yield d


def test_similarity_transform_recovers_a_known_rotation_scale_and_shift():
    angle, scale, shift = np.radians(17), 2.5, np.array([40.0, -12.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    source = TEMPLATE
    target = source @ (scale * rotation).T + shift
    matrix = similarity_transform(source, target)
    np.testing.assert_allclose(matrix[:, :2], scale * rotation, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)
    assert alignment_residual(TEMPLATE) < 1e-9
    assert roll_degrees(TEMPLATE) == 0.0


def test_a_rotated_and_enlarged_face_aligns_to_the_same_crop(detector, utkface_dir):
    """Rotate a real face by 20 degrees and enlarge it 3x inside a bigger picture: the aligned crop
    is close to the crop of the original, while the plain resize of the picture is not."""
    import cv2

    image = load_image(real_faces(utkface_dir, 1, step=1, start=3000)[0])
    original = detector.detect(image)[0].crop
    big = cv2.resize(image, (600, 600), interpolation=cv2.INTER_CUBIC)
    canvas = np.full((1000, 1000, 3), 90, np.uint8)
    canvas[200:800, 200:800] = big
    turn = cv2.getRotationMatrix2D((500, 500), 20, 1.0)
    rotated = cv2.warpAffine(canvas, turn, (1000, 1000), borderValue=(90, 90, 90))
    faces = detector.detect(rotated)
    assert len(faces) == 1
    assert abs(abs(roll_degrees(faces[0].keypoints)) - 20) < 6
    aligned = faces[0].crop.astype(int)
    unaligned = model_input(rotated, CROP_SIZE).astype(int)
    centre = slice(40, 160)  # the face itself, not the corners that hold other background
    close = np.abs(aligned[centre, centre] - original[centre, centre]).mean()
    far = np.abs(unaligned[centre, centre] - original[centre, centre]).mean()
    assert close < 30 and far > 2.5 * close, (close, far)  # measured 24 and 68


def test_training_and_serving_crops_of_the_same_image_are_the_same_pixels(
    detector, utkface_dir, isolated_dirs
):
    """Serving: detector -> aligned crop -> model input. Training: the crop cache, decoded by the
    tf.data pipeline. Equal to the pixel, on real images, one of which needs the detector's border."""
    from agelab import pipeline

    paths = real_faces(utkface_dir, 6, step=1777)
    frame = pd.DataFrame({"path": [str(p) for p in paths], "age": 30, "gender": 0})
    with_inputs = aligned_inputs(frame, 144, log=lambda message: None, workers=1)
    assert len(with_inputs) == len(paths)
    for path, crop_file in zip(with_inputs["path"], with_inputs["input"]):
        face = max(detector.detect(load_image(path)), key=lambda f: f.box[2] * f.box[3])
        served = model_input(face.crop, 144)
        trained = pipeline.decode_image(crop_file, 144).numpy()
        assert trained.shape == served.shape == (144, 144, 3)
        assert np.array_equal(trained, served), path
    # A second call makes nothing (the cache is complete) and gives the same files.
    again = aligned_inputs(frame, 144, log=lambda message: pytest.fail(message), workers=1)
    assert list(again["input"]) == list(with_inputs["input"])


def test_a_training_image_without_a_detected_face_keeps_its_own_framing(isolated_dirs, tmp_path):
    """A crop the detector cannot see (here: blank) is placed on the template, i.e. used as it is."""
    from PIL import Image

    pixels = np.zeros((200, 200, 3), np.uint8)
    pixels[50:150, 50:150] = (200, 30, 30)
    path = tmp_path / "30_0_0_20170101000000000.jpg.chip.png"
    Image.fromarray(pixels).save(path)
    frame = pd.DataFrame({"path": [str(path)], "age": 30, "gender": 0})
    out = aligned_inputs(frame, 112, log=lambda message: None, workers=1)
    crop = np.asarray(Image.open(out["input"][0]))
    np.testing.assert_array_equal(crop, model_input(pixels, 112))


def test_align_face_pads_black_outside_the_image():
    image = np.full((100, 100, 3), 200, np.uint8)
    # A face at half the template's scale, 60 px left of the image: image x = 0 lands on crop x = 120.
    keypoints = TEMPLATE * 0.5 - np.array([60.0, 0.0])
    crop = align_face(image, keypoints)
    assert crop.shape == (CROP_SIZE, CROP_SIZE, 3)
    # Bicubic: within two image pixels (4 crop pixels) of the image's edge the grey rings a little.
    assert (crop[:, :119] == 0).all() and (crop[4:196, 124:] == 200).all()


def test_crop_crossing_the_border_is_padded_black():
    image = np.full((100, 100, 3), 200, np.uint8)
    crop = crop_face(image, (-20, 10, 60, 60), margin=0.0)
    assert crop.shape == (60, 60, 3)
    assert (crop[:, :20] == 0).all() and (crop[:, 20:] == 200).all()
    crop = crop_face(image, (70, 70, 50, 50), margin=DEFAULT_MARGIN)
    assert crop.shape[0] == round(50 * (1 + 2 * DEFAULT_MARGIN))
    assert (crop[-5:, -5:] == 0).all() and (crop[5, 5] == 200).all()
