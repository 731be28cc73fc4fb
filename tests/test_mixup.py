"""Mixup: blended faces and packed targets on real UTKFace images, the config's bounds, a real run."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from agelab import pipeline
from agelab.bins import get_scheme
from agelab.config import ConfigError, build_config
from agelab.paths import PROJECT_ROOT
from agelab.saved_split import load_dataset
from agelab.training import distill, mixup
from agelab.training import verb as training
from tests.real_data import real_images_fixture

import tensorflow as tf  # noqa: E402  isort: skip  (after agelab, which must load first)

SCHEME = get_scheme("groups10")
faces = real_images_fixture(96, step=200)


@pytest.fixture(scope="module")
def frame(faces) -> pd.DataFrame:
    return load_dataset(faces).head(32)


def packed_batch(frame: pd.DataFrame, size: int = 64) -> tuple[tf.Tensor, dict[str, tf.Tensor], tf.Tensor]:
    images = np.stack([pipeline.decode_image(path, size).numpy() for path in frame["path"]])
    labels = distill.packed_labels(frame, SCHEME, sigma=0.0, weight=0.0)
    weights = np.linspace(0.5, 2.0, len(frame)).astype("float32")
    return (
        tf.constant(images, tf.float32),
        {k: tf.constant(v) for k, v in labels.items()},
        tf.constant(weights),
    )


def test_each_face_is_blended_with_one_partner_and_its_targets_in_the_same_share(frame):
    images, labels, weights = packed_batch(frame)
    mixed_images, mixed, mixed_weights = mixup.mix_batch(images, labels, weights, alpha=0.4, seed=3)
    x, y = images.numpy().reshape(len(frame), -1), mixed_images.numpy().reshape(len(frame), -1)
    blended = 0
    for i in range(len(frame)):
        # The share and partner that explain the blended face: least squares over every candidate.
        fits = []
        for j in range(len(frame)):
            d = x[i] - x[j]
            share = 1.0 if not d.any() else float(np.dot(y[i] - x[j], d) / np.dot(d, d))
            fits.append((np.abs(share * x[i] + (1 - share) * x[j] - y[i]).max(), share, j))
        error, share, j = min(fits)
        assert error < 0.01 and 0.5 - 1e-4 <= share <= 1 + 1e-4
        blended += share < 0.999 and j != i
        # The targets and the weight are blended in the face's share; the label column is its own.
        for head in ("age_bin", "gender"):
            own, other = labels[head].numpy()[i], labels[head].numpy()[j]
            np.testing.assert_allclose(
                mixed[head].numpy()[i, 1:], share * own[1:] + (1 - share) * other[1:], atol=1e-3
            )
            assert mixed[head].numpy()[i, 0] == own[0]
        np.testing.assert_allclose(
            mixed["age"].numpy()[i],
            share * labels["age"].numpy()[i] + (1 - share) * labels["age"].numpy()[j],
            rtol=1e-3,
        )
        np.testing.assert_allclose(
            mixed_weights.numpy()[i], share * weights.numpy()[i] + (1 - share) * weights.numpy()[j], rtol=1e-3
        )
    assert blended >= len(frame) // 2  # alpha 0.4 blends most faces, not a few
    np.testing.assert_allclose(mixed["age_bin"].numpy()[:, 1:].sum(axis=1), 1.0, atol=1e-5)


def test_a_small_alpha_leaves_most_faces_almost_whole():
    shares = mixup.blend_shares(tf.constant(4000), 0.05, seed=1).numpy()
    assert shares.min() >= 0.5 and shares.max() <= 1.0 and np.isfinite(shares).all()
    assert np.median(shares) > 0.99
    assert np.median(mixup.blend_shares(tf.constant(4000), 2.0, seed=1).numpy()) < 0.8


def test_only_the_training_dataset_is_mixed(frame):
    labels = lambda f: distill.packed_labels(f, SCHEME, 0.0, 0.0)  # noqa: E731
    kwargs = {"labels": labels, "mix": mixup.mixer(1.0, seed=5), "seed": 1, "cache": "none"}
    train, _ = pipeline.image_dataset(frame, SCHEME, 48, 16, training=True, **kwargs)
    val, _ = pipeline.image_dataset(frame, SCHEME, 48, 16, training=False, **kwargs)
    _, train_labels = next(iter(train))
    _, val_labels = next(iter(val))
    # Validation keeps one-hot targets; training targets are blends of two.
    assert set(np.unique(val_labels["age_bin"].numpy()[:, 1:])) <= {0.0, 1.0}
    assert (train_labels["age_bin"].numpy()[:, 1:].max(axis=1) < 0.999).any()


def test_config_bounds_mixup():
    assert build_config({"mixup": "0.2"})["mixup"] == 0.2
    with pytest.raises(ConfigError, match=r"mixup.*<= 2"):
        build_config({"mixup": 3})


@pytest.mark.slow
def test_a_mixup_run_fine_tunes_on_blended_faces_and_loads_in_a_fresh_process(faces, isolated_dirs):
    config = {
        "data": str(faces), "fast": True, "epochs": 1, "batch_size": 16, "name": "mixup", "image_size": 64,
        "fine_tune_layers": 10, "fine_tune_epochs": 1, "mixup": 0.4,
    }  # fmt: skip
    run_dir = training.train(config)
    history = pd.read_csv(run_dir / "history.csv")
    assert len(history) == 2 and np.isfinite(history["loss"]).all()
    assert history["val_age_bin_acc"].between(0, 1).all() and history["val_gender_acc"].between(0, 1).all()
    assert json.loads((run_dir / "config.json").read_text())["mixup"] == 0.4
    load = f"from agelab.model_files import load_keras; load_keras({str(run_dir / 'model.keras')!r})"
    result = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
