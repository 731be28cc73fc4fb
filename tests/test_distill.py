"""Distillation: packed targets, their losses, the teacher's predictions on real faces, a real run."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from agelab import pipeline
from agelab.bins import get_scheme
from agelab.crop_cache import aligned_inputs
from agelab.images import load_image
from agelab.paths import PROJECT_ROOT
from agelab.predictor import Predictor
from agelab.saved_split import load_dataset
from agelab.training import distill
from agelab.training import verb as training
from agelab.training.errors import RunError
from tests.real_data import real_images_fixture

import keras  # noqa: E402  isort: skip

SHIPPED = PROJECT_ROOT / "models" / "agelab-default.keras"
SCHEME = get_scheme("groups10")
faces = real_images_fixture(120, step=150)


def with_teacher(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(SCHEME.num_bins), len(frame))
    columns = pd.DataFrame(probs, columns=distill.teacher_bin_columns(SCHEME.num_bins), index=frame.index)
    return pd.concat([frame, columns], axis=1).assign(
        teacher_female=rng.uniform(size=len(frame)), teacher_age=rng.uniform(0, 90, len(frame))
    )


@pytest.fixture(scope="module")
def frame(faces) -> pd.DataFrame:
    return load_dataset(faces).head(40)


def test_packed_targets_mix_labels_and_teacher(frame):
    taught = with_teacher(frame)
    bins = SCHEME.bin_of(frame["age"].to_numpy())
    for weight in (0.0, 0.3, 1.0):
        packed = distill.packed_labels(taught, SCHEME, sigma=0.0, weight=weight)
        assert (packed["age_bin"][:, 0] == bins).all() and (packed["gender"][:, 0] == frame["gender"]).all()
        targets = packed["age_bin"][:, 1:]
        teacher = taught[distill.teacher_bin_columns(SCHEME.num_bins)].to_numpy()
        np.testing.assert_allclose(
            targets, (1 - weight) * np.eye(SCHEME.num_bins)[bins] + weight * teacher, atol=1e-6
        )
        np.testing.assert_allclose(targets.sum(axis=1), 1, atol=1e-5)
        expected_gender = (1 - weight) * frame["gender"] + weight * taught["teacher_female"]
        np.testing.assert_allclose(packed["gender"][:, 1], expected_gender, atol=1e-6)
        expected_age = (1 - weight) * frame["age"] + weight * taught["teacher_age"]
        np.testing.assert_allclose(packed["age"][:, 0], expected_age, rtol=1e-6)
    # A split without the teacher (validation) is scored against its labels alone.
    plain = distill.packed_labels(frame, SCHEME, sigma=0.0, weight=0.5)
    np.testing.assert_array_equal(plain["age_bin"][:, 1:], np.eye(SCHEME.num_bins)[bins])
    assert (plain["gender"][:, 1] == frame["gender"]).all()


def test_packed_losses_are_the_ordinary_ones_for_the_labels_alone(frame):
    packed = distill.packed_labels(frame, SCHEME, sigma=0.0, weight=0.5)
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(SCHEME.num_bins), len(frame)).astype("float32")
    female = rng.uniform(0.01, 0.99, (len(frame), 1)).astype("float32")
    losses, metrics = distill.losses_and_metrics()
    bins = packed["age_bin"][:, :1]
    ordinary = keras.losses.SparseCategoricalCrossentropy()(bins, probs)
    np.testing.assert_allclose(float(losses["age_bin"](packed["age_bin"], probs)), float(ordinary), rtol=1e-5)
    ordinary = keras.losses.BinaryCrossentropy()(packed["gender"][:, :1], female)
    np.testing.assert_allclose(float(losses["gender"](packed["gender"], female)), float(ordinary), rtol=1e-5)
    accuracy = metrics["age_bin"][0]
    accuracy.update_state(packed["age_bin"], probs)
    assert float(accuracy.result()) == pytest.approx(np.mean(probs.argmax(axis=1) == bins[:, 0]))


def test_teacher_predictions_are_the_served_ones_on_its_own_crops(frame):
    taught = distill.teacher_predictions(SHIPPED, frame, SCHEME, log=lambda _: None)
    assert len(taught) == len(frame) and (taught["path"] == frame["path"]).all()
    predictor = Predictor(SHIPPED, backend="litert")
    crops = aligned_inputs(frame, predictor.image_size, log=lambda _: None)["input"]
    served = predictor.predict_crops([load_image(p) for p in crops])
    columns = distill.teacher_bin_columns(SCHEME.num_bins)
    np.testing.assert_allclose(taught[columns].to_numpy(), served["age_bin"], atol=1e-5)
    np.testing.assert_allclose(taught["teacher_female"], served["prob_female"], atol=1e-5)
    np.testing.assert_allclose(taught["teacher_age"], served["age"], atol=1e-3)
    with pytest.raises(RunError, match="teacher.*bins 'groups10'.*'decades'"):
        distill.teacher_predictions(SHIPPED, frame, get_scheme("decades"), log=lambda _: None)
    with pytest.raises(RunError, match="teacher='nowhere"):
        distill.teacher_predictions("nowhere/model.keras", frame, SCHEME, log=lambda _: None)


def test_training_order_keeps_each_image_with_its_weight(frame):
    weights = frame["age"].to_numpy("float32") + 0.5  # a weight that names its image's label
    ds, _ = pipeline.image_dataset(
        frame, SCHEME, 32, 8, training=True, cache="none", weights=weights, seed=3, repeat=False
    )
    seen = 0
    for _, labels, batch_weights in ds:
        np.testing.assert_allclose(batch_weights.numpy(), labels["age"].numpy()[:, 0] + 0.5)
        seen += len(batch_weights)
    assert seen == len(frame)


@pytest.mark.slow
def test_a_distilled_run_learns_beside_the_teacher(faces, isolated_dirs, capsys):
    config = {
        "data": str(faces), "fast": True, "epochs": 2, "batch_size": 32, "name": "student",
        "teacher": str(SHIPPED), "teacher_weight": 0.7,
    }  # fmt: skip
    run_dir = training.train(config)
    log = capsys.readouterr().out
    assert "teacher " + str(SHIPPED) in log and "float32" in log
    history = pd.read_csv(run_dir / "history.csv")
    assert {"val_age_bin_acc", "val_gender_acc", "age_bin_acc"} <= set(history.columns)
    assert history["val_age_bin_acc"].between(0, 1).all() and np.isfinite(history["loss"]).all()
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["teacher"] == str(SHIPPED) and saved["teacher_weight"] == 0.7
    # A fresh process loads the saved model, whose compile config names the distillation losses.
    load = f"from agelab.model_files import load_keras; load_keras({str(run_dir / 'model.keras')!r})"
    result = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    first_face = load_image(load_dataset(faces)["path"].iloc[0])
    assert Predictor(run_dir).predict_crops([first_face])["age"].shape == (1,)
