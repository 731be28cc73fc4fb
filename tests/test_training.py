"""Real training runs on a few hundred real UTKFace images, through the CLI and in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from agelab import runs
from agelab.config import build_config
from agelab.model_files import load_model
from agelab.paths import PROJECT_ROOT
from agelab.predictor import Predictor
from agelab.training import verb as training
from tests.real_data import copy_real_images, real_images_fixture

CONTRACT = ["path", "age", "gender", "race", "true_bin", "pred_bin"]


small_data = real_images_fixture(300, step=70)


def check_predictions(run_dir: Path, num_bins: int) -> pd.DataFrame:
    predictions = pd.read_parquet(run_dir / "predictions.parquet")
    # Scored as evaluate scores the images: a model trained on aligned crops says where a face was found.
    aligned = json.loads((run_dir / "model.json").read_text())["crop"] == "aligned"
    labels = CONTRACT[:4] + ["face_found"] * aligned + CONTRACT[4:]
    expected = (
        labels + [f"bin_prob_{k}" for k in range(num_bins)] + ["pred_age", "pred_gender", "prob_female"]
    )
    assert list(predictions.columns) == expected
    assert len(predictions) == json.loads((run_dir / "metrics.json").read_text())["n_test"] > 0
    probs = predictions[[f"bin_prob_{k}" for k in range(num_bins)]].to_numpy()
    assert abs(probs.sum(axis=1) - 1).max() < 1e-3
    assert (predictions["pred_bin"] == probs.argmax(axis=1)).all()
    assert set(predictions["pred_gender"]) <= {0, 1}
    assert predictions["path"].map(os.path.exists).all()
    return predictions


def test_cli_run_finishes_with_a_loadable_model(small_data, isolated_dirs):
    result = subprocess.run(
        [
            sys.executable, "-m", "agelab", "train", f"data={small_data}", "name=cli", "model=baseline_cnn",
            "weights=none", "image_size=64", "epochs=2", "batch_size=32", "bins=decades", "rebalance=class_weights",
        ],
        capture_output=True, text=True, cwd=PROJECT_ROOT, env=dict(os.environ), timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    assert run_dir == isolated_dirs / "runs" / "cli-1"
    run = runs.load_run(run_dir)
    assert run.state == "finished" and run.status["device"].startswith(("CPU", "GPU"))
    assert list(run.history["epoch"]) == [1, 2]
    assert {"loss", "val_loss", "val_age_bin_acc", "val_gender_acc"} <= set(run.history.columns)
    model, sidecar = load_model(run_dir / "model.keras")
    assert sidecar["bins"] == "decades" and sidecar["image_size"] == 64 and sidecar["model"] == "baseline_cnn"
    # Trained on the detector's aligned crops, and calibrated on the validation split.
    assert sidecar["crop"] == "aligned"
    calibration = sidecar["calibration"]
    assert calibration["n"] > 0 and 0.25 <= calibration["gender_temperature"] <= 8.0
    assert {"age_bin_ece_before", "age_bin_ece_after", "gender_ece_before", "gender_ece_after"} <= set(
        calibration
    )
    assert set(model.output_names) == {"age_bin", "age", "gender"}
    # Saved with its LiteRT twin, which then serves it.
    assert sidecar["litert"]["bytes"] == (run_dir / "model.tflite").stat().st_size
    assert Predictor(run_dir).backend == "litert"
    check_predictions(run_dir, 11)
    assert list((run_dir / "tb" / "train").glob("events.out.tfevents.*"))
    assert "[train] epoch 2/2" in (run_dir / "log.txt").read_text()
    # The ETA counted the calibration, export and test scoring after the last batch; both are kept.
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["finish_estimate_s"] > 0 and metrics["finish_seconds"] > 0
    saved = json.loads((run_dir / "config.json").read_text())
    assert build_config(base=saved) == saved and saved["data"] == str(small_data)


def test_fast_mode_trains_heads_from_cached_features(small_data, isolated_dirs):
    config = {"data": str(small_data), "fast": True, "epochs": 3, "batch_size": 32, "name": "fast"}
    first = training.train(config)
    second = training.train(config)
    m1 = json.loads((first / "metrics.json").read_text())
    m2 = json.loads((second / "metrics.json").read_text())
    assert m1["feature_cache_hit"] is False and m2["feature_cache_hit"] is True
    assert len(list((isolated_dirs / "cache" / "features").glob("*.npz"))) == 1
    history = runs.load_run(second).history
    assert set(history["stage"]) == {"heads_fast"} and len(history) == 3
    # Same seed, same cached features: the same heads, so the same test results.
    assert m1["test_bin_accuracy"] == m2["test_bin_accuracy"]
    model, sidecar = load_model(second / "model.keras")
    assert model.input_shape == (None, 112, 112, 3) and sidecar["model"] == "mobilenet_v2"
    check_predictions(second, 10)


def test_a_failure_is_recorded_with_its_reason(utkface_dir, isolated_dirs):
    # 5 images cannot fill train, val and test: the run must fail and say why, in one sentence.
    tiny = copy_real_images(utkface_dir, isolated_dirs / "utk5", 5, step=900)[0].parent
    with pytest.raises(training.TrainingFailed, match="split is empty"):
        training.train({"data": str(tiny), "model": "baseline_cnn", "weights": "none", "crop": "none"})
    (run,) = runs.list_runs()
    assert run.state == "failed"
    assert run.status["error"].startswith("the ") and "split is empty" in run.status["error"]
    assert "Traceback" not in run.status["error"] and "max_images" not in run.status["error"]


@pytest.mark.slow
def test_fast_mode_on_the_full_data_gives_a_useful_model(utkface_dir, isolated_dirs):
    run_dir = training.train({"data": str(utkface_dir), "recipe": "quick", "name": "full"})
    metrics = json.loads((run_dir / "metrics.json").read_text())
    predictions = check_predictions(run_dir, 10)
    # Far above always answering the most common bin or gender.
    majority_bin = predictions["true_bin"].value_counts(normalize=True).iloc[0]
    majority_gender = predictions["gender"].value_counts(normalize=True).iloc[0]
    assert metrics["test_bin_accuracy"] > majority_bin + 0.15
    assert metrics["test_within_one_bin"] > 0.75
    assert metrics["test_gender_accuracy"] > majority_gender + 0.25
    assert metrics["test_age_mae"] < 9
