"""agelab.faces on real images: UTKFace faces, real photos without faces, group pictures and video."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agelab.crop import CROP_SIZE
from agelab.faces import DetectorModelError, FaceDetector, detector_model_path
from agelab.images import load_image
from tests.predict_helpers import detector_models_dir, face_canvas, real_faces, rgb
from tests.real_data import SHARED, require

SKLEARN_PHOTOS = Path(__import__("sklearn").__file__).parent / "datasets" / "images"


@pytest.fixture(scope="module", autouse=True)
def face_model_env():
    folder = detector_models_dir()
    mp = pytest.MonkeyPatch()
    mp.setenv("AGELAB_FACE_MODEL", str(folder))
    yield folder
    mp.undo()


@pytest.fixture(scope="module")
def detector():
    with FaceDetector("short") as det:
        yield det


def test_finds_the_face_in_at_least_98_percent_of_200_real_utkface_images(detector, utkface_dir):
    paths = real_faces(utkface_dir, 200, step=110)
    assert len(paths) == 200
    found = 0
    for path in paths:
        image = load_image(path)
        faces = detector.detect(image, min_score=0.5)
        if faces:
            found += 1
            x, y, w, h = faces[0].box
            # The face fills a UTKFace crop: the box is most of the image and around its centre.
            assert w > 100 and h > 100, (path.name, faces[0].box)
            assert abs(x + w / 2 - 100) < 40 and abs(y + h / 2 - 100) < 40, (path.name, faces[0].box)
    assert found / len(paths) >= 0.98, f"found faces in {found} of {len(paths)}"


@pytest.mark.slow
def test_finds_the_face_in_at_least_99_percent_of_1000_real_utkface_images(detector, utkface_dir):
    paths = real_faces(utkface_dir, 1000, step=22)
    found = sum(bool(detector.detect(load_image(path), min_score=0.5)) for path in paths)
    assert found >= 990, f"found faces in {found} of {len(paths)}"


def test_aligned_crop_of_a_utkface_image_is_about_the_image_itself(detector, utkface_dir):
    """The template is UTKFace's median keypoints, so aligning a UTKFace image barely moves it."""
    differences = []
    for path in real_faces(utkface_dir, 30, step=701):
        image = load_image(path)
        faces = detector.detect(image)
        assert faces, path.name
        crop = faces[0].crop
        assert crop.shape == (CROP_SIZE, CROP_SIZE, 3) and crop.dtype == np.uint8
        assert len(faces[0].keypoints) == 6
        differences.append(np.abs(crop.astype(int) - image.astype(int)).mean())
    # A shifted or rescaled face would differ by ~40 grey levels; aligned, the median is small.
    assert np.median(differences) < 25, differences


def test_a_real_photo_without_a_face_gives_no_face(detector):
    for name in ("china.jpg", "flower.jpg"):  # real photos (a temple, a flower) shipped with scikit-learn
        image = load_image(SKLEARN_PHOTOS / name)
        assert image.shape == (427, 640, 3)
        assert detector.detect(image, min_score=0.5) == [], name


CANVAS_STARTS = (500, 1500, 2500, 3500, 4500, 5500, 6500, 7500)


@pytest.fixture(scope="module")
def canvases(utkface_dir):
    """Eight group pictures, each of four real UTKFace faces pasted in a row on a grey canvas."""
    return [face_canvas(real_faces(utkface_dir, 4, step=2003, start=s)) for s in CANVAS_STARTS]


def _matches(faces, placed) -> int:
    """How many pasted faces have a detected box centred on them."""
    hits = 0
    for px, py, pw, ph in placed:
        cx, cy = px + pw / 2, py + ph / 2
        if any(
            abs(x + w / 2 - cx) < pw / 4 and abs(y + h / 2 - cy) < ph / 4
            for (x, y, w, h) in (f.box for f in faces)
        ):
            hits += 1
    return hits


def test_the_full_range_detector_finds_every_face_of_group_pictures(canvases):
    with FaceDetector("full") as full:
        for data, placed in canvases:
            faces = full.detect(load_image(data), min_score=0.5)
            assert len(faces) == 4 and _matches(faces, placed) == 4, [f.box for f in faces]


def test_the_short_range_detector_finds_most_faces_of_group_pictures(detector, canvases):
    # Short range is made for close faces; on these 960-px-wide canvases it misses a few (measured 29/32).
    found = 0
    for data, placed in canvases:
        faces = detector.detect(load_image(data), min_score=0.5)
        assert len(faces) <= 4
        found += _matches(faces, placed)
    assert found >= 0.85 * 4 * len(canvases), found


def test_litert_runs_the_short_range_model_as_mediapipe_tasks_does(detector, utkface_dir, canvases):
    """The direct LiteRT path (agelab.blazeface) finds the faces MediaPipe Tasks finds, with the same
    scores and keypoints, on real UTKFace crops, photos from outside UTKFace and group pictures."""
    assert detector.runtime == "LiteRT"
    images = [load_image(p) for p in real_faces(utkface_dir, 40, step=523)]
    aaf_dev = require(SHARED / "data" / "aaf-dev", "aaf-dev photos (outside UTKFace)")
    images += [load_image(p) for p in sorted(aaf_dev.glob("*.jpg"))[:30]]
    images += [load_image(data) for data, _ in canvases[:4]]
    offsets, faces = [], 0
    with FaceDetector("short", runtime="mediapipe") as tasks:
        assert tasks.runtime == "MediaPipe Tasks"
        for image in images:
            # One detection pass each: the task rounds its boxes to whole pixels, and locate's close-up
            # pass, placed by the box, would carry that rounding into the keypoints.
            ours = detector._detect_once(image, 1.0, 0.0, 0.0, 0.3, None)
            theirs = tasks._detect_once(image, 1.0, 0.0, 0.0, 0.3, None)
            assert len(ours) == len(theirs), image.shape
            for (box, score, points), (their_box, their_score, their_points) in zip(
                ours, theirs, strict=True
            ):
                assert abs(score - their_score) < 0.01
                x, y, w, h = box
                if x >= 0 and y >= 0 and x + w <= image.shape[1] and y + h <= image.shape[0]:
                    # Inside the frame (the task clips boxes to it), sizes agree to its whole pixels.
                    assert abs(w - their_box[2]) < 2 and abs(h - their_box[3]) < 2
                offsets.append(np.abs(points - their_points).max())
                faces += 1
    assert faces >= 70
    # Keypoints agree to a fraction of a pixel (the two resamplers round differently).
    assert np.median(offsets) < 0.3 and np.percentile(offsets, 90) < 1.0, np.percentile(
        offsets, [50, 90, 100]
    )


def test_a_large_photo_is_downscaled_for_detection_and_boxes_come_back_in_its_pixels(detector, utkface_dir):
    face = Image.open(real_faces(utkface_dir, 1, step=1, start=4500)[0]).convert("RGB").resize((900, 900))
    canvas = Image.new("RGB", (6000, 4000), (120, 120, 120))
    canvas.paste(face, (3500, 1800))
    image = np.asarray(canvas)
    faces = detector.detect(image)
    assert len(faces) == 1
    x, y, w, h = faces[0].box
    assert abs(x + w / 2 - 3950) < 150 and abs(y + h / 2 - 2250) < 150, faces[0].box
    assert w > 600 and faces[0].crop.shape == (CROP_SIZE, CROP_SIZE, 3)
    # The 900 px face, a seventh of the frame, gets its keypoints again from a close-up and is shrunk
    # by area averaging: the face itself (not the canvas around it) matches the crop of the same face
    # at its own 200 px (mean difference measured 20 grey levels; 30 without the close-up).
    small = detector.detect(np.asarray(face.resize((200, 200), Image.Resampling.LANCZOS)))[0].crop
    centre = slice(40, 160)
    assert np.abs(faces[0].crop[centre, centre].astype(int) - small[centre, centre].astype(int)).mean() < 25


def test_video_mode_tracks_frames_with_increasing_timestamps(utkface_dir):
    frames = [rgb(p) for p in real_faces(utkface_dir, 5, step=900)]
    with FaceDetector("short", mode="video") as video:
        counts = [len(video.detect(frame, timestamp_ms=1000)) for frame in frames]  # same ts: made increasing
    assert counts == [1, 1, 1, 1, 1]


def test_model_resolution_order_and_missing_model_error(tmp_path, monkeypatch, face_model_env):
    explicit = face_model_env / "face_detection_full_range_sparse.tflite"
    assert detector_model_path("short", explicit) == explicit
    assert detector_model_path("short") == face_model_env / "face_detection_short_range.tflite"
    monkeypatch.delenv("AGELAB_FACE_MODEL")
    monkeypatch.delenv("AGELAB_MIRROR", raising=False)
    monkeypatch.setenv("AGELAB_MODELS_DIR", str(tmp_path / "empty"))
    with pytest.raises(DetectorModelError, match="AGELAB_FACE_MODEL"):
        detector_model_path("full", download=False)
    with pytest.raises(DetectorModelError, match="does not exist"):
        detector_model_path("short", tmp_path / "nope.tflite")
