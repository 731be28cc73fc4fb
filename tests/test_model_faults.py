"""Models, sidecars and the verbs that write next to them: a sidecar that cannot serve its model is
refused naming the file and the key; a plain Keras model is named as such; ``predict``, ``evaluate``
and ``ensemble`` never write over an input, a folder, or another model's files, and a failed
``ensemble`` leaves the model it would have replaced as it was."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from agelab import atomic
from agelab.bins import get_scheme
from agelab.commands import evaluate, predict
from agelab.model_files import ModelError
from agelab.paths import PROJECT_ROOT
from agelab.predictor import Predictor
from tests.predict_helpers import detector_models_dir, save_contract_model
from tests.real_data import copy_real_images


def with_sidecar(model: Path, folder: Path, **changes) -> Path:
    """A copy of ``model`` in ``folder`` whose sidecar has ``changes`` (None removes a key)."""
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / model.name
    shutil.copy(model, copy)
    meta = json.loads(model.with_suffix(".json").read_text())
    meta.update(changes)
    copy.with_suffix(".json").write_text(json.dumps({k: v for k, v in meta.items() if v is not None}))
    return copy


@pytest.fixture(scope="module")
def trained_like(tmp_path_factory) -> Path:
    """A contract model whose sidecar records its bin labels, as ``train`` writes them."""
    model = save_contract_model(tmp_path_factory.mktemp("trained"), stem="tiny")
    meta = json.loads(model.with_suffix(".json").read_text())
    meta["bin_labels"] = get_scheme("groups10").labels
    model.with_suffix(".json").write_text(json.dumps(meta))
    return model


@pytest.fixture(scope="module")
def photo(utkface_dir, tmp_path_factory) -> Path:
    return copy_real_images(utkface_dir, tmp_path_factory.mktemp("photo"), 1, step=4000)[0]


# Sidecars that once loaded and then served wrong answers, or crashed with a bare ValueError.
BAD_SIDECARS = {
    "zero temperature": (
        {"calibration": {"age_bin_temperature": 0, "gender_temperature": 1.2}},
        "age_bin_temperature is 0",
    ),
    "negative temperature": ({"calibration": {"gender_temperature": -1.0}}, "gender_temperature is -1.0"),
    "calibration text": ({"calibration": "abc"}, 'calibration is "abc"'),
    "swapped bins": ({"bins": "0,5,10,15,20,30,40,50,60,70"}, "bin_labels"),
    "garbage bins": ({"bins": "garbage"}, 'bins "garbage" is not a bin scheme'),
    "text size": ({"image_size": "abc"}, 'image_size "abc" is not a size'),
}


@pytest.mark.parametrize("case", list(BAD_SIDECARS))
def test_a_sidecar_that_cannot_serve_its_model_is_refused_naming_it(trained_like, tmp_path, case):
    changes, reason = BAD_SIDECARS[case]
    model = with_sidecar(trained_like, tmp_path, **changes)
    with pytest.raises(ModelError) as raised:
        Predictor(model, "keras")
    assert str(model.with_suffix(".json")) in str(raised.value) and reason in str(raised.value)


@pytest.mark.parametrize("case", list(BAD_SIDECARS))
def test_predict_refuses_a_bad_sidecar_in_one_line(trained_like, tmp_path, photo, capsys, case):
    model = with_sidecar(trained_like, tmp_path, **BAD_SIDECARS[case][0])
    assert predict.cli(["--no-detect", "--model", str(model), str(photo)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sidecar" in err[0] and str(model.with_suffix(".json")) in err[0], err


def test_the_predict_page_says_why_a_model_with_a_bad_sidecar_cannot_serve(
    trained_like, isolated_dirs, monkeypatch
):
    models = isolated_dirs / "models"
    with_sidecar(trained_like, models / "a", bins="garbage")
    shutil.copytree(models / "a", models, dirs_exist_ok=True)
    shutil.rmtree(models / "a")
    monkeypatch.setenv("AGELAB_MODELS_DIR", str(models))
    monkeypatch.setenv("AGELAB_FACE_MODEL", str(detector_models_dir()))
    app = AppTest.from_file(str(PROJECT_ROOT / "pages" / "predict.py"), default_timeout=120).run()
    assert not app.exception, app.exception
    assert any('bins "garbage" is not a bin scheme' in e.value for e in app.error), [
        e.value for e in app.error
    ]
    (models / "tiny.json").write_text(json.dumps({"bins": "groups10", "image_size": "abc"}))
    app.run()
    assert not app.exception, app.exception
    assert any('image_size "abc"' in e.value for e in app.error), [e.value for e in app.error]


def plain_keras_model(folder: Path) -> Path:
    """A Keras model of another project (one output tensor), given a sidecar so that it is found."""
    import keras

    folder.mkdir(parents=True, exist_ok=True)
    model = keras.Sequential(
        [keras.Input((64, 64, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)]
    )
    path = folder / "plain.keras"
    model.save(path)
    path.with_suffix(".json").write_text(json.dumps({"bins": "groups10", "image_size": 64}))
    return path


def test_a_plain_keras_model_is_named_as_not_an_agelab_model(tmp_path, trained_like, photo, capsys):
    from agelab.commands import ensemble

    plain = plain_keras_model(tmp_path / "plain")
    assert predict.cli(["--no-detect", "--model", str(plain), str(photo)]) == 2
    err = capsys.readouterr().err
    assert f"{plain} is not an agelab model" in err and "Traceback" not in err
    out = tmp_path / "ens.keras"
    assert ensemble.cli(["--models", str(trained_like), str(plain), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{plain} is not an agelab model" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


# ---------------------------------------------------------------- predict --out


def test_predict_refuses_an_out_that_is_one_of_its_images(trained_like, tmp_path, photo, capsys):
    image = tmp_path / "photo.jpg"
    shutil.copy(photo, image)
    before = image.read_bytes()
    for out in (image, tmp_path / "." / "photo.jpg"):
        assert predict.cli(["--no-detect", "--model", str(trained_like), "--out", str(out), str(image)]) == 2
        assert "is one of the input images" in capsys.readouterr().err
    assert predict.cli(["--no-detect", "--model", str(trained_like), "--out", str(image), str(tmp_path)]) == 2
    assert image.read_bytes() == before


def test_predict_and_ensemble_refuse_an_out_that_is_a_folder(trained_like, tmp_path, photo, capsys):
    from agelab.commands import ensemble

    assert predict.cli(["--no-detect", "--model", str(trained_like), "--out", str(tmp_path), str(photo)]) == 2
    err = capsys.readouterr().err
    assert f"--out {tmp_path} is a folder" in err and len(err.strip().splitlines()) == 1
    folder = tmp_path / "models.keras"
    folder.mkdir()
    assert ensemble.cli(["--models", str(trained_like), "--out", str(folder)]) == 2
    err = capsys.readouterr().err
    assert f"--out {folder} is a folder" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- ensemble --out


def test_a_failed_ensemble_leaves_the_model_at_out_as_it_was(trained_like, tmp_path, capsys):
    """Its calibration fails (no validation images): the model, sidecar and twin at --out stay."""
    from agelab.commands import ensemble

    out = tmp_path / "models" / "agelab-default.keras"
    out.parent.mkdir()
    for suffix in (".keras", ".json"):
        shutil.copy(trained_like.with_suffix(suffix), out.with_suffix(suffix))
    out.with_suffix(".tflite").write_bytes(b"the twin of the old model")
    before = {p.name: p.read_bytes() for p in out.parent.iterdir()}
    (tmp_path / "empty").mkdir()
    second = save_contract_model(tmp_path / "b", seed=1)
    argv = ["--models", str(trained_like), str(second), "--out", str(out), "--data", str(tmp_path / "empty")]
    assert ensemble.cli(argv) == 1
    err = capsys.readouterr().err
    assert f"{out} was not changed" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in out.parent.iterdir()} == before  # no staged leftovers either


def test_an_ensemble_replaces_the_model_at_out_with_its_twin_and_sidecar(trained_like, tmp_path, utkface_dir):
    out = tmp_path / "models" / "ens.keras"
    out.parent.mkdir()
    out.write_bytes(b"an old model")
    out.with_suffix(".int8.tflite").write_bytes(b"an old int8 twin, stale once the model is replaced")
    data = tmp_path / "utk"
    copy_real_images(utkface_dir, data, 40, step=500)
    second = save_contract_model(tmp_path / "b", seed=1)
    done = subprocess.run(
        [sys.executable, "-m", "agelab", "ensemble", "--models", str(trained_like), str(second),
         "--out", str(out), "--data", str(data)],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=600,
        env=dict(os.environ, AGELAB_CACHE_DIR=str(tmp_path / "cache")),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in out.parent.iterdir()) == ["ens.json", "ens.keras", "ens.tflite"]
    predictor = Predictor(out)
    assert predictor.backend == "litert" and predictor.warning is None  # the twin matches the model
    assert predictor.meta["calibration"]["n"] > 0


# ---------------------------------------------------------------- evaluate --out


def test_evaluate_refuses_an_out_its_summary_would_overwrite(utkface_dir, tmp_path, trained_like, capsys):
    data = tmp_path / "utk"
    copy_real_images(utkface_dir, data, 2, step=4000)
    out = tmp_path / "x.json"
    assert evaluate.cli(["--model", str(trained_like), "--data", str(data), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "give a name ending in .parquet" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_two_models_with_one_file_name_keep_their_evaluations_apart(
    utkface_dir, tmp_path, isolated_dirs, capsys
):
    data = tmp_path / "utk"
    copy_real_images(utkface_dir, data, 3, step=3000)
    first = save_contract_model(tmp_path / "a", stem="tiny", seed=0)
    second = save_contract_model(tmp_path / "b", stem="tiny", seed=1)
    saved = []
    for model in (first, second, first):
        assert evaluate.cli(["--model", str(model), "--data", str(data), "--no-detect"]) == 0
        summary = json.loads(capsys.readouterr().out.strip())
        saved.append(Path(summary["out"]))
    assert saved[0] == saved[2] != saved[1]
    for path, model in zip(saved[:2], (first, second)):
        assert json.loads(path.with_suffix(".json").read_text())["model"] == str(model)
        assert len(pd.read_parquet(path)) == 3


# ---------------------------------------------------------------- twins


def test_a_twin_of_another_model_is_not_served_and_the_advice_is_to_export_again(tmp_path, utkface_dir):
    """The twin's record matches its bytes, but it takes another size: the sidecar is right, the twin
    is wrong, so Keras serves and the warning says to export again (not to edit image_size)."""
    from agelab import litert_export

    other = save_contract_model(tmp_path / "other", stem="m", image_size=48)
    litert_export.export(other)
    model = save_contract_model(tmp_path / "model", stem="m")
    shutil.copy(other.with_suffix(".tflite"), model.with_suffix(".tflite"))
    meta = json.loads(model.with_suffix(".json").read_text())
    record = json.loads(other.with_suffix(".json").read_text())["litert"]
    meta["litert"] = {**record, "keras_sha256": litert_export.sha256(model)}
    model.with_suffix(".json").write_text(json.dumps(meta))
    predictor = Predictor(model)
    assert predictor.backend == "keras"
    assert "the twin of another model" in predictor.warning and "agelab export" in predictor.warning
    assert "set image_size" not in predictor.warning
    face = np.asarray(
        __import__("PIL.Image", fromlist=["Image"]).open(next(utkface_dir.glob("3*_1_*.jpg.chip.jpg")))
    )
    assert predictor.predict_crops([face])["age_bin"].shape == (1, 10)


# ---------------------------------------------------------------- the face detector model


def test_agelab_face_model_naming_nothing_is_an_error_not_ignored(tmp_path, monkeypatch):
    from agelab.faces import DetectorModelError, detector_model_path

    (tmp_path / "empty").mkdir()
    for setting, where in ((tmp_path / "missing.tflite", "does not exist"), (tmp_path / "empty", "has no")):
        monkeypatch.setenv("AGELAB_FACE_MODEL", str(setting))
        for kind in ("short", "full"):
            with pytest.raises(DetectorModelError, match=rf"AGELAB_FACE_MODEL names .* \(.*{where}"):
                detector_model_path(kind)


def test_predict_names_a_face_detector_model_that_is_not_one(trained_like, tmp_path, photo, monkeypatch):
    garbage = tmp_path / "face_detection_full_range_sparse.tflite"
    garbage.write_bytes(b"\x00not a flatbuffer" * 64)
    done = subprocess.run(
        [sys.executable, "-m", "agelab", "predict", "--detector", "full", "--detector-model", str(garbage),
         "--model", str(trained_like), str(photo)],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"the face detector model {garbage} cannot be loaded" in done.stderr
    assert "Traceback" not in done.stderr


# ---------------------------------------------------------------- file modes


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_honour_the_umask(tmp_path, umask, mode):
    """A file written in place would have these modes; mkstemp alone made every one 0600, which a
    dashboard or cluster running as another user cannot read."""
    script = (
        "import os, sys; from agelab import atomic; os.umask(int(sys.argv[2], 8)); "
        "atomic.write_json(sys.argv[1], {'a': 1})"
    )
    path = tmp_path / "status.json"
    subprocess.run(
        [sys.executable, "-c", script, str(path), oct(umask)], check=True, cwd=PROJECT_ROOT, timeout=60
    )
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert atomic.read_json(path) == {"a": 1}


# ---------------------------------------------------------------- faces too small to find


def group_photo(utkface_dir: Path, path: Path, faces: int = 30, side: int = 120, width: int = 2400) -> Path:
    """Real faces ``side`` px wide, spread in a grid over a ``width`` px grey photo (a class photo)."""
    from PIL import Image

    from tests.predict_helpers import real_faces

    height = width * 3 // 4
    canvas = Image.new("RGB", (width, height), (120, 120, 120))
    for i, face in enumerate(real_faces(utkface_dir, faces, step=700)):
        row, col = divmod(i, 6)
        x, y = 100 + col * (width - 200) // 6, 100 + row * (height - 200) // 5
        canvas.paste(Image.open(face).convert("RGB").resize((side, side)), (x, y))
    canvas.save(path, quality=92)
    return path


def test_a_group_photo_of_small_faces_gets_a_hint_and_a_portrait_does_not(
    trained_like, tmp_path, utkface_dir, monkeypatch, capsys
):
    monkeypatch.setenv("AGELAB_FACE_MODEL", str(detector_models_dir()))
    group = group_photo(utkface_dir, tmp_path / "class.jpg")
    for detector in ("full", "short"):
        assert predict.cli(["--detector", detector, "--model", str(trained_like), str(group)]) == 0
        record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert len(record["faces"]) <= 3  # what the detector finds of the 30
        assert "too small for the detector" in record["hint"] and "2400x1800" in record["hint"]
    portrait = tmp_path / "portrait.jpg"
    from PIL import Image

    Image.open(next(utkface_dir.glob("3*_0_*.jpg.chip.jpg"))).resize((1200, 1200)).save(portrait)
    assert predict.cli(["--model", str(trained_like), str(portrait)]) == 0
    record = json.loads(capsys.readouterr().out.strip())
    assert len(record["faces"]) == 1 and "hint" not in record


def test_the_predict_page_gives_the_small_faces_hint(
    trained_like, tmp_path, utkface_dir, isolated_dirs, monkeypatch
):
    models = isolated_dirs / "models"
    model_copy = with_sidecar(trained_like, models)
    monkeypatch.setenv("AGELAB_MODELS_DIR", str(model_copy.parent))
    monkeypatch.setenv("AGELAB_FACE_MODEL", str(detector_models_dir()))
    group = group_photo(utkface_dir, tmp_path / "class.jpg")
    app = AppTest.from_file(str(PROJECT_ROOT / "pages" / "predict.py"), default_timeout=120).run()
    app.file_uploader[0].set_value([("class.jpg", group.read_bytes(), "image/jpeg")]).run()
    assert not app.exception, app.exception
    assert any("class.jpg: found" in i.value and "too small for the detector" in i.value for i in app.info)


def test_predict_out_with_a_file_name_that_is_not_utf8(trained_like, tmp_path, photo, capsys):
    folder = tmp_path / "odd"
    folder.mkdir()
    odd = os.fsdecode(bytes(folder) + b"/caf\xe9-" + photo.name.encode())  # Latin-1, as old cameras wrote
    shutil.copy(photo, odd)
    out = tmp_path / "faces.csv"
    assert predict.cli(["--no-detect", "--model", str(trained_like), "--out", str(out), str(folder)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    table = pd.read_csv(out)  # valid UTF-8, the odd byte kept as an escape
    assert table["path"].tolist() == [f"{folder}/caf\\xe9-{photo.name}"]


def test_int8_export_on_a_folder_without_images_says_so(trained_like, tmp_path, capsys):
    from agelab import litert_export

    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=rf"{tmp_path / 'empty'} holds no well-named UTKFace image"):
        litert_export.prepared_faces({"image_size": 64}, "train", 4, data=tmp_path / "empty")
