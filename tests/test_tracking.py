"""The live webcam's path (agelab.tracking): faces followed across frames by their close-ups, one
model view a frame averaged with the other view of the frame before; on real UTKFace faces with the
shipped model (a mirror-averaged model whose LiteRT twin holds one view)."""

from __future__ import annotations

import numpy as np
import pytest

from agelab.faces import FaceDetector
from agelab.paths import PROJECT_ROOT
from agelab.predictor import Predictor, predict_image
from agelab.tracking import REDETECT_EVERY, FaceTracker, box_iou, live_note
from tests.predict_helpers import real_faces, rgb

SHIPPED = PROJECT_ROOT / "models" / "agelab-default.keras"
SPOTS = ((100, 30), (350, 30), (100, 260), (350, 260))


pytestmark = pytest.mark.usefixtures("detector_env")


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    predictor = Predictor(SHIPPED)
    assert predictor.single_views, predictor.backend_note
    return predictor


@pytest.fixture(scope="module")
def faces(utkface_dir) -> list[np.ndarray]:
    import cv2

    return [cv2.resize(rgb(p), (190, 190)) for p in real_faces(utkface_dir, 5, step=1201, start=40)]


def frame_of(faces: list[np.ndarray], spots=SPOTS) -> np.ndarray:
    """A 640x480 webcam frame with a face at each spot (a family in front of a laptop)."""
    frame = np.full((480, 640, 3), 60, np.uint8)
    for face, (x, y) in zip(faces, spots):
        frame[y : y + 190, x : x + 190] = face
    return frame


class ViewCounter:
    """Counts the images each model call sends (a photo sends two views a face)."""

    def __init__(self, predictor: Predictor, monkeypatch: pytest.MonkeyPatch) -> None:
        self.images: list[int] = []
        lite = predictor._lite
        real = lite.view

        def counted(batch, mirrored=False):
            self.images.append(len(batch))
            return real(batch, mirrored)

        monkeypatch.setattr(lite, "view", counted)


def assert_same_predictions(tracked, photo, atol=1e-5):
    assert [r.box for r in tracked] == [r.box for r in photo]
    for a, b in zip(tracked, photo):
        assert a.prediction.bin == b.prediction.bin
        np.testing.assert_allclose(a.prediction.prob_female, b.prediction.prob_female, atol=atol)
        np.testing.assert_allclose(a.prediction.age, b.prediction.age, atol=1e-3)
        np.testing.assert_allclose(
            [p for _, p in a.prediction.top3], [p for _, p in b.prediction.top3], atol=atol
        )


def test_the_first_frame_is_the_photo_and_later_frames_cost_one_view_a_face(predictor, faces, monkeypatch):
    frame = frame_of(faces)
    with FaceDetector("short", mode="video") as detector:
        photo = predict_image(frame, detector, predictor)
        assert len(photo) == 4
        counter = ViewCounter(predictor, monkeypatch)
        tracker = FaceTracker(detector, predictor)
        first = tracker.step(frame)
        assert_same_predictions(first, photo)
        assert counter.images == [8]  # both views of four new faces
        frames = 2 * REDETECT_EVERY
        for _ in range(frames - 1):
            tracked = tracker.step(frame)
            assert len(tracked) == 4
            # The same four faces, found again by their close-ups.
            for face in tracked:
                assert max(box_iou(face.box, p.box) for p in photo) > 0.7
        assert counter.images[1:] == [4] * (frames - 1)  # one view a face
        assert tracker.searched == 2  # the whole frame: the first frame and one in REDETECT_EVERY


@pytest.mark.parametrize("backend", ["auto", "keras"])
def test_searching_every_frame_gives_every_frame_the_photos_two_view_prediction(predictor, faces, backend):
    """Each frame's single view, averaged with the other view of the same crop a frame before, is the
    photo's prediction; a Keras model (no single views) sends both views every frame."""
    served = predictor if backend == "auto" else Predictor(SHIPPED, backend="keras")
    assert served.single_views == (backend == "auto")
    frame = frame_of(faces)
    with FaceDetector("short", mode="video") as detector:
        photo = predict_image(frame, detector, served)
        tracker = FaceTracker(detector, served, redetect_every=1)
        for _ in range(3):
            assert_same_predictions(tracker.step(frame), photo)


def test_a_face_that_leaves_is_dropped_at_once_and_a_new_one_is_found_within_a_search(predictor, faces):
    four, three = frame_of(faces), frame_of(faces[:3])
    other = frame_of(faces[:3] + faces[4:5])  # the fourth spot: another person
    with FaceDetector("short", mode="video") as detector:
        tracker = FaceTracker(detector, predictor)
        assert len(tracker.step(four)) == 4
        assert len(tracker.step(three)) == 3  # a followed frame: the close-up finds nobody there
        counts = [len(tracker.step(other)) for _ in range(REDETECT_EVERY)]
        assert counts[-1] == 4 and counts[0] == 3, counts
        (newcomer,) = [r for r in tracker.step(other) if box_iou(r.box, (350, 260, 190, 190)) > 0.3]
        alone = predict_image(frame_of(faces[4:5], SPOTS[3:]), detector, predictor)
        assert newcomer.prediction.bin_label == alone[0].prediction.bin_label


def test_redetect_every_must_be_at_least_one(predictor):
    with (
        FaceDetector("short", mode="video") as detector,
        pytest.raises(ValueError, match="at least every frame"),
    ):
        FaceTracker(detector, predictor, redetect_every=0)


def test_the_page_note_says_which_views_each_frame_gets(predictor):
    assert "one view a frame" in live_note(predictor)
    assert "both views" in live_note(Predictor(SHIPPED, backend="keras"))
    assert "one frame in 6" in live_note(predictor)
