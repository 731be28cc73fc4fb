"""LiteRT twins (agelab.litert_export, agelab.litert_serving, agelab.commands.export): export, serving, parity with Keras on real UTKFace crops, fallbacks;
and the model-loading faults the Predict page used to crash on."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from agelab import litert_export
from agelab.commands import export as export_command
from agelab.ensemble import single_view
from agelab.litert_serving import sha256
from agelab.model_files import ModelError
from agelab.paths import PROJECT_ROOT
from agelab.predictor import Predictor
from tests.predict_helpers import real_faces, rgb, save_contract_model

SHIPPED = PROJECT_ROOT / "models" / "agelab-default.keras"
REEXPORT = f"python -m agelab export --model {SHIPPED.relative_to(PROJECT_ROOT)}"


def assert_parity(lite: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> None:
    """Bin probabilities and P(female) within 1e-4; age (years, an expectation over bin centres up to
    ~100) within 1e-4 relative to it."""
    np.testing.assert_allclose(lite["age_bin"], ref["age_bin"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(lite["prob_female"], ref["prob_female"], rtol=0, atol=1e-4)
    age_gap = np.abs(lite["age"] - ref["age"]) / np.maximum(np.abs(ref["age"]), 1.0)
    assert age_gap.max() <= 1e-4, f"age differs by up to {age_gap.max():.2g} relative"
    assert (lite["age_bin"].argmax(1) == ref["age_bin"].argmax(1)).all()


def copy_model(source: Path, folder: Path, suffixes=(".keras", ".json", ".tflite")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in suffixes:
        if source.with_suffix(suffix).is_file():
            shutil.copy(source.with_suffix(suffix), folder / f"{source.stem}{suffix}")
    return folder / source.name


@pytest.fixture(scope="module")
def crops(utkface_dir) -> list[np.ndarray]:
    """70 real UTKFace crops spread over the sorted folder (ages 1 to 116)."""
    return [rgb(p) for p in real_faces(utkface_dir, 70, step=311)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """A small contract model (run-folder layout) exported through the ``export`` verb."""
    folder = tmp_path_factory.mktemp("run")
    save_contract_model(folder)
    assert export_command.cli(["--model", str(folder)]) == 0
    return folder / "model.keras"


# --------------------------------------------------------------------------- the shipped model


def test_the_shipped_model_is_served_by_its_committed_twin_and_matches_keras(crops):
    lite = Predictor(SHIPPED, backend="litert")
    assert lite.backend == "litert", f"{lite.backend_note}; re-export the twin: {REEXPORT}"
    assert lite.warning is None and "served by LiteRT" in lite.backend_note
    keras = Predictor(SHIPPED, backend="keras")
    assert keras.backend == "keras"
    batch = lite.to_batch(crops)  # 70 faces: one batch of 64 and one of 6
    assert_parity(lite.predict_batch(batch), keras.predict_batch(batch))
    for i in (0, 33):  # single faces (the live webcam's usual batch)
        assert_parity(lite.predict_batch(batch[i : i + 1]), keras.predict_batch(batch[i : i + 1]))


def test_the_shipped_twin_holds_one_view_and_serving_averages_it_with_the_mirror(crops):
    """The shipped model averages each face's mirror view inside its graph; its twin is the one
    view, so serving can send both views as one batch (a photo) or one alone (the live webcam)."""
    import keras

    assert json.loads(SHIPPED.with_suffix(".json").read_text())["litert"]["mirror_views"] is True
    lite = Predictor(SHIPPED, backend="litert")
    assert lite.single_views and not Predictor(SHIPPED, backend="keras").single_views
    batch = lite.to_batch(crops[:12])
    image, mirror = lite.raw_view(batch, mirrored=False), lite.raw_view(batch, mirrored=True)
    both = lite.raw_outputs(batch)
    for key in both:
        np.testing.assert_allclose((image[key] + mirror[key]) / 2, both[key], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(mirror["age_bin"], lite.raw_view(batch[:, :, ::-1], False)["age_bin"])
    assert np.abs(image["prob_female"] - mirror["prob_female"]).max() > 1e-3  # two views, not one twice
    one_view, had_mirror = single_view(keras.saving.load_model(SHIPPED, compile=False))
    assert had_mirror
    reference = one_view(batch, training=False)
    np.testing.assert_allclose(image["age_bin"], np.asarray(reference["age_bin"]), rtol=0, atol=1e-4)


# --------------------------------------------------------------------------- export


def test_export_writes_a_twin_its_sidecar_records_and_predictions_serve_from_it(exported, crops):
    twin = exported.with_suffix(".tflite")
    record = json.loads(exported.with_suffix(".json").read_text())["litert"]
    assert record["file"] == "model.tflite" and record["keras_file"] == "model.keras"
    assert record["sha256"] == sha256(twin) and record["keras_sha256"] == sha256(exported)
    assert record["bytes"] == twin.stat().st_size and record["max_abs_gap"] < 1e-4
    lite = Predictor(exported.parent)  # the run folder
    assert lite.backend == "litert" and lite.warning is None
    keras = Predictor(exported.parent, backend="keras")
    batch = lite.to_batch(crops)
    assert_parity(lite.predict_batch(batch), keras.predict_batch(batch))
    # Batch sizes in any order (live webcam: 1, 3, 2 faces...) give each face the same result.
    whole = lite.predict_batch(batch[:6])
    for start, stop in ((0, 1), (1, 4), (4, 6), (0, 3)):
        part = lite.predict_batch(batch[start:stop])
        np.testing.assert_allclose(part["age_bin"], whole["age_bin"][start:stop], atol=1e-6)


def test_export_of_a_missing_model_says_so(tmp_path, capsys):
    assert export_command.cli(["--model", str(tmp_path / "none.keras")]) == 2
    assert "none.keras" in capsys.readouterr().err


# --------------------------------------------------------------------------- fallbacks


def break_truncate(model: Path) -> None:
    twin = model.with_suffix(".tflite")
    twin.write_bytes(twin.read_bytes()[: twin.stat().st_size // 2])


def break_garbage_recorded(model: Path) -> None:
    # Not a flatbuffer, although the sidecar's record matches it: the interpreter itself refuses it.
    twin = model.with_suffix(".tflite")
    twin.write_bytes(b"\x00garbage" * 1000)
    sidecar = model.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    meta["litert"]["sha256"] = sha256(twin)
    sidecar.write_text(json.dumps(meta))


def break_stale(model: Path) -> None:
    # The .keras is replaced by another model (a retrained one); the old twin stays.
    save_contract_model(model.parent, stem=model.stem, seed=1)
    meta = json.loads(model.with_suffix(".json").read_text())
    assert "litert" not in meta  # the new sidecar: copy the old record back, as a careless copy would
    old = json.loads((model.parent / "old.json").read_text())
    meta["litert"] = old["litert"]
    model.with_suffix(".json").write_text(json.dumps(meta))


def break_unrecorded(model: Path) -> None:
    sidecar = model.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    del meta["litert"]
    sidecar.write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("breaker", "reason"),
    [
        (break_truncate, "not the file its sidecar records"),
        (break_garbage_recorded, "not a loadable LiteRT model"),
        (break_stale, "exported from another version of model.keras"),
        (break_unrecorded, "no 'litert' record"),
    ],
)
def test_a_corrupt_or_mismatched_twin_falls_back_to_keras_with_one_warning(
    exported, crops, tmp_path, caplog, breaker, reason
):
    model = copy_model(exported, tmp_path)
    shutil.copy(model.with_suffix(".json"), tmp_path / "old.json")
    breaker(model)
    with caplog.at_level(logging.WARNING):
        predictor = Predictor(model)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("agelab")]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    assert (
        reason in message and "serving with Keras" in message and "python -m agelab export --model" in message
    )
    assert predictor.backend == "keras" and predictor.warning and reason in predictor.backend_note
    # It serves the .keras as it is now (for the stale case, the new model, not the twin).
    batch = predictor.to_batch(crops[:8])
    out = predictor.predict_batch(batch)
    reference = Predictor(model, backend="keras").predict_batch(batch)
    np.testing.assert_array_equal(out["age_bin"], reference["age_bin"])


# --------------------------------------------------------------------------- model-loading faults


@pytest.mark.parametrize("with_twin", [False, True])
def test_a_sidecar_whose_image_size_disagrees_with_the_model_is_one_model_error(
    exported, tmp_path, with_twin
):
    suffixes = (".keras", ".json", ".tflite") if with_twin else (".keras", ".json")
    model = copy_model(exported, tmp_path, suffixes)
    sidecar = model.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    real_size = meta["image_size"]
    meta["image_size"] = real_size + 48
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(ModelError) as caught:
        Predictor(model)
    message = str(caught.value)
    assert "\n" not in message
    assert f"says image_size {real_size + 48}" in message and f"takes {real_size}x{real_size}" in message


def test_a_corrupt_keras_file_is_called_corrupt_not_missing(exported, tmp_path):
    model = copy_model(exported, tmp_path, (".keras", ".json"))
    model.write_bytes(model.read_bytes()[:5000])  # a truncated copy
    with pytest.raises(ModelError, match="corrupt") as caught:
        Predictor(model)
    assert "not found" not in str(caught.value).lower()


# --------------------------------------------------------------------------- the Predict page


def test_the_predict_page_says_which_backend_serves_and_why(exported, isolated_dirs, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.predict_helpers import detector_models_dir

    models = isolated_dirs / "models"
    model = copy_model(exported, models)
    monkeypatch.setenv("AGELAB_MODELS_DIR", str(models))
    monkeypatch.setenv("AGELAB_FACE_MODEL", str(detector_models_dir()))
    page = str(PROJECT_ROOT / "pages" / "predict.py")

    at = AppTest.from_file(page, default_timeout=120).run()
    assert not at.exception, at.exception
    assert any("served by LiteRT (model.tflite" in c.value for c in at.caption), [c.value for c in at.caption]
    assert not at.warning
    runtime = next(s for s in at.selectbox if s.label == "Runtime")
    assert runtime.value == "auto"
    runtime.set_value("keras").run()
    assert not at.exception, at.exception
    assert any("served by Keras" in c.value for c in at.caption), [c.value for c in at.caption]

    break_truncate(model)
    at = AppTest.from_file(page, default_timeout=120).run()
    assert not at.exception, at.exception
    assert any("served by Keras: model.tflite was not used" in c.value for c in at.caption)
    assert any("python -m agelab export --model" in w.value for w in at.warning)


# --------------------------------------------------------------------------- the int8 twin


def test_the_shipped_model_is_served_by_its_int8_twin_first(crops):
    served = Predictor(SHIPPED)
    assert served.backend == "litert-int8" and served.warning is None, served.backend_note
    assert "agelab-default.int8.tflite, int8" in served.backend_note
    assert Predictor(SHIPPED, backend="litert").backend == "litert"  # float32 on request
    record = json.loads(SHIPPED.with_suffix(".json").read_text())["litert_int8"]
    assert record["sha256"] == sha256(SHIPPED.with_suffix(".int8.tflite"))
    assert record["keras_sha256"] == sha256(SHIPPED), f"re-export: {REEXPORT} --int8"


def test_the_int8_twin_costs_less_than_the_float32_intervals_on_real_test_faces():
    """Held to accuracy, not to parity: on 400 test-split faces cropped as predict crops them, int8's
    exact and within-one accuracy, age MAE and gender accuracy each stay within float32's 95 %
    interval half-width of float32 (what bench/quantize.py measures on the whole split)."""
    from agelab.bins import get_scheme
    from agelab.evaluation.intervals import bootstrap_mean_interval, wilson_interval

    int8, float32 = Predictor(SHIPPED, backend="litert-int8"), Predictor(SHIPPED, backend="litert")
    assert int8.backend == "litert-int8"
    frame, batch = litert_export.prepared_faces(int8.meta, "test", 400, seed=3)
    true_bin = get_scheme(int8.scheme).bin_of(frame["age"].to_numpy())
    ages, female = frame["age"].to_numpy(), frame["gender"].to_numpy() == 1

    def scores(out: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
        n = len(ages)
        pred = out["age_bin"].argmax(1)
        counts = {
            "exact": int((pred == true_bin).sum()),
            "within1": int((np.abs(pred - true_bin) <= 1).sum()),
            "gender": int(((out["prob_female"] >= 0.5) == female).sum()),
        }
        result = {}
        for key, k in counts.items():
            lo, hi = wilson_interval(k, n)
            result[key] = (k / n, (hi - lo) / 2)
        errors = np.abs(out["age"] - ages)
        lo, hi = bootstrap_mean_interval(errors)
        result["mae"] = (float(errors.mean()), (hi - lo) / 2)
        return result

    ours, ref = scores(int8.predict_batch(batch)), scores(float32.predict_batch(batch))
    assert ref["within1"][0] > 0.9 and ref["mae"][0] < 6  # the faces are the model's own kind
    for key in ("exact", "within1", "gender"):
        assert ours[key][0] >= ref[key][0] - ref[key][1], (key, ours[key], ref[key])
    assert ours["mae"][0] <= ref["mae"][0] + ref["mae"][1], (ours["mae"], ref["mae"])


@pytest.fixture(scope="module")
def int8_exported(tmp_path_factory) -> Path:
    """A copy of the shipped model with both twins exported by ``export --int8`` (64 calibration faces)."""
    model = copy_model(SHIPPED, tmp_path_factory.mktemp("int8"), (".keras", ".json"))
    assert export_command.cli(["--model", str(model), "--int8", "--calibration", "64"]) == 0
    return model


def test_export_int8_writes_a_recorded_twin_checked_against_keras(int8_exported, crops):
    twin = int8_exported.with_suffix(".int8.tflite")
    meta = json.loads(int8_exported.with_suffix(".json").read_text())
    record = meta["litert_int8"]
    assert record["file"] == twin.name and record["sha256"] == sha256(twin)
    assert record["keras_sha256"] == sha256(int8_exported) and record["calibration_faces"] == 64
    assert twin.stat().st_size < 0.5 * int8_exported.with_suffix(".tflite").stat().st_size
    agreement = record["agreement_with_keras"]
    assert agreement["n"] == 300 and agreement["same_bin"] >= litert_export.INT8_MIN_SAME_BIN
    served = Predictor(int8_exported)
    assert served.backend == "litert-int8" and served.single_views
    batch = served.to_batch(crops[:16])
    out, ref = served.predict_batch(batch), Predictor(int8_exported, backend="keras").predict_batch(batch)
    assert np.abs(out["age_bin"] - ref["age_bin"]).max() > 1e-4  # quantized, not a float32 copy
    assert np.abs(out["age"] - ref["age"]).mean() < litert_export.INT8_MAX_AGE_GAP


@pytest.mark.parametrize("breaker", ["truncate", "stale"])
def test_a_broken_int8_twin_falls_back_to_the_float32_twin_with_one_warning(
    int8_exported, tmp_path, caplog, breaker
):
    model = copy_model(int8_exported, tmp_path, (".keras", ".json", ".tflite", ".int8.tflite"))
    twin = model.with_suffix(".int8.tflite")
    if breaker == "truncate":
        twin.write_bytes(twin.read_bytes()[:1000])
        reason = "not the file its sidecar records"
    else:
        meta = json.loads(model.with_suffix(".json").read_text())
        meta["litert_int8"]["keras_sha256"] = "0" * 64
        model.with_suffix(".json").write_text(json.dumps(meta))
        reason = "exported from another version"
    with caplog.at_level(logging.WARNING):
        predictor = Predictor(model)
    warnings = [
        r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("agelab")
    ]
    assert len(warnings) == 1, warnings
    assert reason in warnings[0] and "serving with the float32 twin" in warnings[0]
    assert "python -m agelab export --int8 --model" in warnings[0]
    assert predictor.backend == "litert" and "int8.tflite was not used" in predictor.backend_note


def test_asking_for_int8_where_there_is_none_says_so_and_serves_float32(exported, caplog):
    with caplog.at_level(logging.WARNING):
        predictor = Predictor(exported, backend="litert-int8")
    assert (
        predictor.backend == "litert"
        and "model.int8.tflite was not used (it does not exist)" in predictor.warning
    )
    assert Predictor(exported).backend == "litert" and Predictor(exported).warning is None  # auto: silent
