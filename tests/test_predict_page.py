"""The Predict page through AppTest: real photos uploaded, refused files, the no-face path."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from tests.predict_helpers import detector_models_dir, face_canvas, real_faces, save_contract_model

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "predict.py")
FLOWER = Path(__import__("sklearn").__file__).parent / "datasets" / "images" / "flower.jpg"


@pytest.fixture(scope="module")
def shipped_model(tmp_path_factory):
    return save_contract_model(tmp_path_factory.mktemp("shipped"), stem="tiny")


@pytest.fixture
def page(isolated_dirs, monkeypatch, shipped_model):
    models = isolated_dirs / "models"
    models.mkdir()
    for suffix in (".keras", ".json"):
        shutil.copy(shipped_model.with_suffix(suffix), models / f"tiny{suffix}")
    monkeypatch.setenv("AGELAB_MODELS_DIR", str(models))
    monkeypatch.setenv("AGELAB_FACE_MODEL", str(detector_models_dir()))
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at, models


def files_on_disk(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_upload_of_real_photos_shows_one_row_per_face_and_writes_nothing(page, utkface_dir):
    at, models = page
    captions = " ".join(c.value for c in at.caption)
    assert "written to disk" in captions
    assert "short-range (and full-range, where faces are small) detector, run by LiteRT" in captions
    assert at.selectbox[0].options == ["tiny.keras"]
    before = files_on_disk(models.parent)
    face = real_faces(utkface_dir, 1, step=1, start=4500)[0]
    group, _ = face_canvas(real_faces(utkface_dir, 3, step=2003, start=6500))
    webp = io.BytesIO()
    Image.open(face).save(webp, "WEBP", quality=90)
    at.file_uploader[0].set_value(
        [
            (face.name, face.read_bytes(), "image/jpeg"),
            ("group.jpg", group, "image/jpeg"),
            ("face.webp", webp.getvalue(), "image/webp"),
        ]
    ).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    tables = [d.value for d in at.dataframe][1:]  # the first is the model table
    assert len(tables) == 3
    assert len(tables[0]) == 1
    # What matters first, so no sideways scroll hides it.
    assert list(tables[0].columns)[:7] == [
        "face", "age", "age group", "probability", "gender", "gender probability", "detection"
    ]  # fmt: skip
    assert len(tables[1]) >= 2  # the short-range detector on a group picture
    assert len(tables[2]) == 1  # WebP accepted
    # The untrained test model spreads its probabilities: every face is flagged, in words.
    flagged = [w.value for w in at.warning if "is uncertain (marked ? on the photo)" in w.value]
    assert len(flagged) >= 3 and all("close call" in w for w in flagged), flagged
    assert files_on_disk(models.parent) == before


def test_other_files_are_refused_by_name_and_a_photo_without_face_can_be_predicted_whole(page):
    at, _ = page
    at.file_uploader[0].set_value(
        [
            ("notes.jpg", b"just some text, not a photo\n", "image/jpeg"),
            ("empty.jpg", b"", "image/jpeg"),
            ("flower.jpg", FLOWER.read_bytes(), "image/jpeg"),
        ]
    ).run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 2 and "notes.jpg" in errors[0] and "not an image" in errors[0]
    assert errors[1] == "empty.jpg: refused, the file is empty (0 bytes)."
    assert any("No face found in flower.jpg" in w.value for w in at.warning)
    assert len(at.dataframe) == 1  # only the model table
    at.checkbox(key="whole_up2_flower.jpg").check().run()
    assert len(at.dataframe) == 2 and len(at.dataframe[1].value) == 1


def test_the_confidence_slider_filters_faces(page, utkface_dir):
    at, _ = page
    face = real_faces(utkface_dir, 1, step=1, start=4500)[0]
    at.slider[0].set_value(0.95).run()
    at.file_uploader[0].set_value((face.name, face.read_bytes(), "image/jpeg")).run()
    assert any("No face found" in w.value for w in at.warning)


def test_camera_snapshot_mode_predicts_the_captured_photo(page, utkface_dir):
    at, _ = page
    at.radio[0].set_value("Camera snapshot").run()
    face = real_faces(utkface_dir, 1, step=1, start=4500)[0]
    at.camera_input[0].set_value(("photo.jpg", face.read_bytes(), "image/jpeg")).run()
    assert not at.exception, at.exception
    assert len(at.dataframe) == 2 and len(at.dataframe[1].value) == 1


def test_no_model_says_how_to_get_one(isolated_dirs, monkeypatch):
    monkeypatch.setenv("AGELAB_MODELS_DIR", str(isolated_dirs / "empty"))
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception
    assert "No trained model yet" in at.info[0].value


LIVE_SCRIPT = """
import sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(sys.argv[1], default_timeout=120)
at.run()
at.file_uploader[0].set_value(("face.jpg", open(sys.argv[2], "rb").read(), "image/jpeg")).run()
assert not at.exception and len(at.dataframe) == 2, at
import tensorflow  # loaded by the prediction above
from agelab.import_order import webrtc_importable
print("IMPORTABLE", webrtc_importable())
import streamlit_webrtc  # what the Live webcam mode imports; crashes if its library loads after TensorFlow
print("WEBRTC OK")
"""


def test_the_live_webcam_library_still_loads_after_a_prediction(page, tmp_path, utkface_dir):
    """In a fresh process, as in the app: the page claims streamlit-webrtc's SRTP library before
    TensorFlow loads, so switching to Live webcam after predicting photos does not segfault.
    (AppTest cannot render the WebRTC component itself: it needs a real Streamlit session.)"""
    import os
    import subprocess
    import sys

    script = tmp_path / "live.py"
    script.write_text(LIVE_SCRIPT)
    root = str(Path(PAGE).parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    face = real_faces(utkface_dir, 1, step=1, start=4500)[0]
    done = subprocess.run(
        [sys.executable, str(script), PAGE, str(face)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=root,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-3000:])
    assert "IMPORTABLE True" in done.stdout and "WEBRTC OK" in done.stdout, done.stdout


def label_height(side: int) -> int:
    """Rows painted above a face box in a ``side`` x ``side`` photo, the label's block."""
    from agelab.annotate import annotate
    from agelab.predictor import FacePrediction, FaceResult

    image = np.full((side, side, 3), 255, np.uint8)
    prediction = FacePrediction(6, "Mature Adult (35-44)", 0.71, [], 38.4, "female", 0.93, 0.07)
    box = (side // 3, side // 2, side // 8, side // 8)
    out = annotate(image, [FaceResult(box, 0.9, prediction, np.zeros((1, 1, 3), np.uint8))])
    rows = np.flatnonzero((out[: side // 2] != 255).any(axis=(1, 2)))
    return int(rows.max() - rows.min() + 1)


def test_labels_on_the_photo_grow_with_it():
    small, large = label_height(500), label_height(2000)
    # Shown 600 px wide on the page, a 2,000 px photo's label must stay >= 10 px tall on screen.
    assert large * 600 / 2000 >= 30  # three lines of at least 10 px
    assert 3 <= large / small <= 5
