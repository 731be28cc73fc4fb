"""``python -m agelab evaluate`` on real UTKFace images with a real saved model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agelab.bins import get_scheme
from agelab.data import parse_name
from agelab.paths import PROJECT_ROOT
from tests.real_data import copy_real_images

IMAGE_SIZE = 64
GOOD_IMAGES = 12


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real contract model (small_cnn, groups10 bins) saved as X.keras with its X.json sidecar."""
    from agelab.model_files import save_model
    from agelab.models import create_model

    scheme = get_scheme("groups10")
    built = create_model("small_cnn", IMAGE_SIZE, scheme.num_bins, weights="none", age_head="dex")
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    sidecar = {"bins": scheme.spec, "image_size": IMAGE_SIZE, "model": "small_cnn", "age_head": "dex"}
    return save_model(built.model, path, sidecar)


@pytest.fixture
def messy_folder(utkface_dir: Path, tmp_path: Path) -> Path:
    """Real UTKFace images, plus a corrupt JPEG, a truncated JPEG, a malformed name and a text file."""
    folder = tmp_path / "fresh"
    real = copy_real_images(utkface_dir, folder, GOOD_IMAGES, step=997)
    (folder / "30_1_0_20170109150557335.jpg.chip.jpg").write_bytes(b"this is not a jpeg at all")
    data = real[0].read_bytes()
    (folder / "41_0_2_20170109150557336.jpg.chip.jpg").write_bytes(data[: len(data) // 3])
    (folder / "61_1_20170109150557335.jpg.chip.jpg").write_bytes(real[1].read_bytes())  # race missing
    (folder / "notes.txt").write_text("not an image\n")
    return folder


def run_evaluate(*args: str, env_dirs: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AGELAB_RUNS_DIR": str(env_dirs / "runs"),
        "AGELAB_CACHE_DIR": str(env_dirs / "cache"),
    }
    return subprocess.run(
        [sys.executable, "-m", "agelab", "evaluate", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def json_line(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one JSON line on stdout, got {lines}"
    return json.loads(lines[0])


def evaluate_messy(
    saved_model: Path, messy_folder: Path, out: Path, *args: str, env_dirs: Path
) -> tuple[subprocess.CompletedProcess[str], dict]:
    """``evaluate`` of the saved model on the messy folder into ``out`` (with ``args``), which must
    succeed: the process and its one JSON line."""
    proc = run_evaluate(
        "--model", str(saved_model), "--data", str(messy_folder), "--out", str(out), *args, env_dirs=env_dirs
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc, json_line(proc.stdout)


def test_evaluate_skips_and_counts_bad_files(
    saved_model: Path, messy_folder: Path, isolated_dirs: Path
) -> None:
    out = isolated_dirs / "preds.parquet"
    proc, summary = evaluate_messy(
        saved_model, messy_folder, out, "--batch-size", "5", env_dirs=isolated_dirs
    )
    assert summary["n"] == GOOD_IMAGES
    assert summary["skipped"] == 4
    assert summary["skipped_malformed_name"] == 2  # the race-less name and notes.txt
    assert summary["skipped_unreadable"] == 2  # the corrupt and the truncated JPEG
    assert "61_1_20170109150557335.jpg.chip.jpg" in proc.stderr
    assert summary["bins"] == "groups10"
    for key in ("mae", "gender_acc", "exact", "within1"):
        assert isinstance(summary[key], float)

    # The table follows the predictions contract, and the printed metrics are those of the table,
    # recomputed here from the file names' labels.
    table = pd.read_parquet(out)
    assert len(table) == GOOD_IMAGES
    scheme = get_scheme("groups10")
    assert [f"bin_prob_{k}" for k in range(scheme.num_bins)] == [
        c for c in table if c.startswith("bin_prob_")
    ]
    labels = [parse_name(Path(p).name) for p in table["path"]]
    ages = np.array([lab.age for lab in labels])
    genders = np.array([lab.gender for lab in labels])
    assert (table["age"].to_numpy() == ages).all() and (table["gender"].to_numpy() == genders).all()
    probs = table[[f"bin_prob_{k}" for k in range(scheme.num_bins)]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    assert (table["pred_bin"].to_numpy() == probs.argmax(axis=1)).all()
    exact = np.mean(probs.argmax(axis=1) == scheme.bin_of(ages))
    within1 = np.mean(np.abs(probs.argmax(axis=1) - scheme.bin_of(ages)) <= 1)
    mae = np.mean(np.abs(table["pred_age"].to_numpy() - ages))
    gender_acc = np.mean((table["prob_female"].to_numpy() >= 0.5).astype(int) == genders)
    assert summary["exact"] == pytest.approx(exact)
    assert summary["within1"] == pytest.approx(within1)
    assert summary["mae"] == pytest.approx(mae)
    assert summary["gender_acc"] == pytest.approx(gender_acc)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert {item["file"] for item in sidecar["skipped_files"]} == {
        "30_1_0_20170109150557335.jpg.chip.jpg",
        "41_0_2_20170109150557336.jpg.chip.jpg",
        "61_1_20170109150557335.jpg.chip.jpg",
        "notes.txt",
    }


def test_each_row_holds_what_the_saved_model_says_about_its_image(
    saved_model: Path, messy_folder: Path, isolated_dirs: Path
) -> None:
    """Across batches, every row gets its own image's outputs from the saved Keras model."""
    import keras

    from agelab.evaluation.evaluate import evaluate_folder
    from agelab.images import load_image
    from agelab.predictor import load_predictor

    predictor = load_predictor(saved_model)
    result = evaluate_folder(predictor, messy_folder, batch_size=5)
    assert len(result.predictions) == GOOD_IMAGES and len(result.skipped) == 4
    model = keras.models.load_model(saved_model, compile=False)
    for row in result.predictions.itertuples():
        one = model.predict(predictor.to_batch([load_image(row.path)]), verbose=0)
        # The reported age is the years head's own, never bent into the predicted group.
        assert row.pred_age == pytest.approx(float(np.ravel(one["age"])[0]), abs=1e-3)
        assert row.prob_female == pytest.approx(float(np.ravel(one["gender"])[0]), abs=1e-4)
        assert row.pred_bin == int(np.argmax(one["age_bin"][0]))
    assert result.predictions["prob_female"].nunique() == GOOD_IMAGES  # a real model sees different faces


def test_evaluate_under_another_scheme_bins_by_predicted_age(
    saved_model: Path, messy_folder: Path, isolated_dirs: Path
) -> None:
    out = isolated_dirs / "decades.parquet"
    _, summary = evaluate_messy(saved_model, messy_folder, out, "--bins", "decades", env_dirs=isolated_dirs)
    assert summary["bins"] == "decades" and summary["n"] == GOOD_IMAGES
    table = pd.read_parquet(out)
    decades = get_scheme("decades")
    assert (table["true_bin"].to_numpy() == decades.bin_of(table["age"].to_numpy())).all()
    assert (table["pred_bin"].to_numpy() == decades.bin_of(table["pred_age"].to_numpy())).all()
    assert not [c for c in table if c.startswith("bin_prob_")]
    assert summary["exact"] == pytest.approx(np.mean(table["true_bin"] == table["pred_bin"]))


def test_evaluate_names_bad_arguments(saved_model: Path, tmp_path: Path, isolated_dirs: Path) -> None:
    missing = run_evaluate(
        "--model", str(tmp_path / "nope.keras"), "--data", str(tmp_path), env_dirs=isolated_dirs
    )
    assert missing.returncode == 2 and "nope.keras" in missing.stderr and not missing.stdout.strip()
    bad_bins = run_evaluate(
        "--model", str(saved_model), "--data", str(tmp_path), "--bins", "0,5,3", env_dirs=isolated_dirs
    )
    assert bad_bins.returncode == 2 and "strictly increasing" in bad_bins.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = run_evaluate("--model", str(saved_model), "--data", str(empty), env_dirs=isolated_dirs)
    assert nothing.returncode == 1 and json_line(nothing.stdout)["n"] == 0


def test_the_default_model_is_scored_once_on_the_test_split(saved_model, utkface_dir, tmp_path, monkeypatch):
    import shutil

    from agelab.evaluation.predictions import load_predictions
    from agelab.evaluation.sources import default_model_source
    from agelab.saved_split import load_dataset

    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(saved_model, models / "agelab-default.keras")
    shutil.copy(saved_model.with_suffix(".json"), models / "agelab-default.json")
    data = tmp_path / "data"
    copy_real_images(utkface_dir, data, 200, step=100)
    for key, value in {
        "MODELS_DIR": models,
        "DATA": data,
        "RUNS_DIR": tmp_path / "runs",
        "CACHE_DIR": tmp_path / "c",
    }.items():
        monkeypatch.setenv(f"AGELAB_{key}", str(value))

    source = default_model_source()
    predictions = load_predictions(source.predictions)
    test = load_dataset(data).query("split == 'test'")
    assert sorted(predictions["path"]) == sorted(str(Path(p).resolve()) for p in test["path"])
    assert (
        predictions["pred_bin"].between(0, 9).all()
        and len(bin_columns := [c for c in predictions if c.startswith("bin_prob_")]) == 10
    )
    assert np.allclose(predictions[bin_columns].sum(axis=1), 1.0, atol=1e-4)

    written = source.predictions.stat().st_mtime_ns
    assert default_model_source().predictions.stat().st_mtime_ns == written  # reused, not redone

    # A model that takes aligned crops is scored through the detector, as `evaluate` scores it.
    from tests.predict_helpers import detector_models_dir

    monkeypatch.setenv("AGELAB_FACE_MODEL", str(detector_models_dir()))
    sidecar = json.loads((models / "agelab-default.json").read_text())
    (models / "agelab-default.json").write_text(json.dumps({**sidecar, "crop": "aligned"}))
    aligned = load_predictions(default_model_source().predictions)
    assert aligned["face_found"].mean() > 0.9 and len(aligned) == len(predictions)
