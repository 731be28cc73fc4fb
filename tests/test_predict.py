"""agelab.predictor, agelab.live and the predict verb, with a small contract model on real UTKFace images."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from agelab import atomic
from agelab.bins import get_scheme
from agelab.commands.predict import cli
from agelab.faces import FaceDetector
from agelab.images import load_image
from agelab.live import LiveAnnotator, rtc_configuration
from agelab.model_files import ModelError, available_models
from agelab.predictor import load_predictor, predict_image
from tests.predict_helpers import (
    IMAGE_SIZE,
    face_canvas,
    real_faces,
    rgb,
    save_contract_model,
)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return save_contract_model(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def predictor(model_path):
    return load_predictor(model_path)


pytestmark = pytest.mark.usefixtures("detector_env")


def test_predictor_reads_the_sidecar(predictor, model_path):
    assert predictor.scheme == get_scheme("groups10")
    assert predictor.image_size == IMAGE_SIZE
    assert predictor.meta["model"] == "tiny_test_cnn"
    assert load_predictor(model_path) is predictor  # cached
    assert load_predictor(model_path.parent / "model.keras") is predictor


def test_predict_crops_batches_any_crop_sizes(predictor, utkface_dir):
    crops = [rgb(p) for p in real_faces(utkface_dir, 5, step=3001)]
    crops[1] = crops[1][:150, :120]  # not square, smaller than the original
    crops[2] = np.ascontiguousarray(np.repeat(np.repeat(crops[2], 2, axis=0), 2, axis=1))  # 400x400
    out = predictor.predict_crops(crops)
    assert out["age_bin"].shape == (5, 10) and out["age"].shape == (5,) and out["prob_female"].shape == (5,)
    assert np.allclose(out["age_bin"].sum(axis=1), 1.0, atol=1e-4)
    assert ((out["prob_female"] >= 0) & (out["prob_female"] <= 1)).all()
    # One face alone gives the same answer as in the batch.
    alone = predictor.predict_crops([crops[3]])
    assert np.allclose(alone["age_bin"][0], out["age_bin"][3], atol=1e-5)
    # Different real faces get different outputs (the model looks at the pixels).
    assert np.ptp(out["age"]) > 0
    empty = predictor.predict_crops([])
    assert empty["age_bin"].shape == (0, 10)


def test_describe_gives_label_probability_top3_age_and_gender(predictor, utkface_dir):
    crops = [rgb(p) for p in real_faces(utkface_dir, 3, step=5001)]
    out = predictor.predict_crops(crops)
    for i, face in enumerate(predictor.describe_all(out)):
        probs = out["age_bin"][i]
        assert face.bin == int(np.argmax(probs))
        assert face.bin_label == get_scheme("groups10").labels[face.bin]
        assert face.bin_prob == pytest.approx(float(probs.max()))
        assert [label for label, _ in face.top3][0] == face.bin_label and len(face.top3) == 3
        assert face.top3[0][1] >= face.top3[1][1] >= face.top3[2][1]
        assert face.gender in {"female", "male"} and face.gender_prob >= 0.5
        assert face.age == pytest.approx(float(out["age"][i]))


def test_predict_image_finds_every_face_and_predicts_each(predictor, utkface_dir):
    data, placed = face_canvas(real_faces(utkface_dir, 3, step=2003, start=6500))
    image = load_image(data)
    with FaceDetector("full") as detector:
        results = predict_image(image, detector, predictor, min_score=0.5)
        assert len(results) == 3
        assert predict_image(image, detector, predictor, min_score=0.999) == []
    for result in results:
        assert result.crop.shape[2] == 3
        row = result.as_dict()
        assert set(row) >= {"box", "score", "bin", "bin_label", "bin_prob", "age", "gender", "gender_prob"}
    whole = predict_image(image, None, predictor)
    assert (
        len(whole) == 1 and whole[0].box == (0, 0, image.shape[1], image.shape[0]) and whole[0].score is None
    )


def test_a_model_without_sidecar_or_with_wrong_bins_is_refused(tmp_path, model_path):
    lone = tmp_path / "lone.keras"
    shutil.copy(model_path, lone)
    with pytest.raises(ModelError, match="sidecar"):
        load_predictor(lone)
    shutil.copy(model_path, tmp_path / "wrong.keras")
    atomic.write_json(tmp_path / "wrong.json", {"bins": "decades", "image_size": IMAGE_SIZE})
    with pytest.raises(ModelError, match="11"):
        load_predictor(tmp_path / "wrong.keras")
    with pytest.raises(ModelError, match="run folder or a .keras"):
        load_predictor(tmp_path / "model.h5")


def test_available_models_lists_finished_runs_and_model_files(isolated_dirs, monkeypatch, model_path):
    models = isolated_dirs / "models"
    models.mkdir()
    shutil.copy(model_path, models / "shipped.keras")
    atomic.write_json(
        models / "shipped.json",
        {"bins": "groups10", "image_size": IMAGE_SIZE, "metrics": {"test_bin_accuracy": 0.5}},
    )
    shutil.copy(model_path, models / "no_sidecar.keras")
    monkeypatch.setenv("AGELAB_MODELS_DIR", str(models))
    run = isolated_dirs / "runs" / "tiny-1"
    run.mkdir(parents=True)
    shutil.copy(model_path, run / "model.keras")
    shutil.copy(model_path.with_suffix(".json"), run / "model.json")
    atomic.write_json(run / "config.json", {"model": "tiny", "bins": "groups10"})
    atomic.write_json(run / "status.json", {"status": "finished", "created": 1.0})
    atomic.write_json(run / "metrics.json", {"test_bin_accuracy": 0.4})
    found = {m.name: m for m in available_models()}
    assert set(found) == {"run tiny-1", "shipped.keras"}
    assert found["run tiny-1"].metrics["test_bin_accuracy"] == 0.4
    assert found["shipped.keras"].metrics["test_bin_accuracy"] == 0.5


def test_cli_prints_one_json_line_per_image_and_carries_on_after_bad_files(
    tmp_path, model_path, utkface_dir, capsys
):
    folder = tmp_path / "photos"
    folder.mkdir()
    good = real_faces(utkface_dir, 2, step=4001, start=10)
    for path in good:
        shutil.copy(path, folder / path.name)
    (folder / "broken.jpg").write_text("not a photo")
    out_csv = tmp_path / "table.csv"
    code = cli(["--model", str(model_path), str(folder), "--out", str(out_csv), "--min-score", "0.5"])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 3
    by_name = {line["path"].rsplit("/", 1)[-1]: line for line in lines}
    assert "broken.jpg" in by_name["broken.jpg"]["error"] and "faces" not in by_name["broken.jpg"]
    for path in good:
        line = by_name[path.name]
        assert len(line["faces"]) >= 1 and line["ms"] > 0  # a few UTKFace photos show a second face
        face = line["faces"][0]
        assert set(face) >= {"box", "score", "bin", "bin_label", "bin_prob", "age", "gender", "gender_prob"}
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) >= 3 and {r["path"].rsplit("/", 1)[-1] for r in rows if r["error"]} == {"broken.jpg"}


def test_cli_no_detect_treats_each_image_as_one_crop(model_path, capsys):
    sklearn_photo = __import__("sklearn").__path__[0] + "/datasets/images/flower.jpg"
    assert cli(["--model", str(model_path), "--no-detect", sklearn_photo]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["faces"][0]["box"] == [0, 0, 640, 427] and line["faces"][0]["score"] is None


def test_cli_reports_a_missing_model(tmp_path, capsys):
    assert cli(["--model", str(tmp_path / "none.keras"), str(tmp_path)]) == 2
    assert "none.keras" in capsys.readouterr().err


def test_live_annotator_draws_boxes_on_real_video_frames_and_counts_fps(predictor, utkface_dir):
    frames = []
    for path in real_faces(utkface_dir, 6, step=1500, start=4500):
        frame = np.zeros((480, 640, 3), np.uint8)
        frame[140:340, 220:420] = rgb(path)
        frames.append(frame)
    with FaceDetector("short", mode="video") as detector:
        live = LiveAnnotator(detector, predictor, min_score=0.5)
        outputs = [live.process(frame) for frame in frames[:-1]]
        # The last one as streamlit-webrtc hands it over: an av.VideoFrame with a timestamp.
        import av

        incoming = av.VideoFrame.from_ndarray(frames[-1], format="rgb24")
        incoming.pts, incoming.time_base = 3000, __import__("fractions").Fraction(1, 90000)
        returned = live.on_video_frame(incoming)
        assert returned.pts == 3000 and (returned.width, returned.height) == (640, 480)
        outputs.append(returned.to_ndarray(format="rgb24"))
    assert live.stats()["faces"] == 1 and live.fps > 0
    for frame, out in zip(frames, outputs):
        assert out.shape == frame.shape and not np.array_equal(out, frame)
        assert np.array_equal(out[200:280, 280:360], frame[200:280, 280:360])  # the face itself is untouched


def test_rtc_configuration_from_the_environment(monkeypatch):
    monkeypatch.delenv("AGELAB_ICE_SERVERS", raising=False)
    assert rtc_configuration() == {"iceServers": []}
    stun = [{"urls": ["stun:stun.example.org:3478"]}]
    monkeypatch.setenv("AGELAB_ICE_SERVERS", json.dumps(stun))
    assert rtc_configuration() == {"iceServers": stun}
    monkeypatch.setenv("AGELAB_ICE_SERVERS", json.dumps({"iceServers": stun}))
    assert rtc_configuration() == {"iceServers": stun}
    monkeypatch.setenv("AGELAB_ICE_SERVERS", "{stun: nope")
    with pytest.raises(ValueError, match="AGELAB_ICE_SERVERS is not valid JSON"):
        rtc_configuration()


def test_captions_of_faces_side_by_side_stay_over_their_own_box():
    from agelab.annotate import annotate
    from agelab.predictor import FacePrediction, FaceResult

    image = np.full((300, 300, 3), 255, np.uint8)
    prediction = FacePrediction(6, "Mature Adult (35-44)", 0.71, [], 38.4, "male", 0.93, 0.07)
    boxes = [(20, 100, 110, 110), (140, 100, 110, 110)]  # 10 px apart, narrower than a one-line caption
    results = [FaceResult(box, 0.9, prediction, np.zeros((1, 1, 3), np.uint8)) for box in boxes]
    out = annotate(image, results)
    caption_rows = out[:100]  # above the boxes
    painted = np.flatnonzero((caption_rows != 255).any(axis=(0, 2)))
    assert painted.min() == 20 and painted.max() <= 140 + 110 + 2
    gap = caption_rows[:, 20 + 110 + 2 : 140]
    assert (gap == 255).all()  # the first caption ends before the second box begins
    assert (out[100:210, [20, 140]] != 255).any(axis=-1).all()  # the boxes' left sides
