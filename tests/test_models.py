"""The model factory against the model contract, on real UTKFace images."""

from __future__ import annotations

import numpy as np
import pytest

from agelab import models, pipeline
from agelab.bins import GROUPS10
from agelab.model_files import load_model, save_model


@pytest.fixture(scope="module")
def real_batch(utkface_dir) -> np.ndarray:
    names = sorted(p for p in utkface_dir.iterdir() if p.name.endswith(".jpg.chip.jpg"))[::2000][:4]
    return np.stack([pipeline.decode_image(str(p), 112).numpy() for p in names]).astype("float32")


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("baseline_cnn", {}),
        ("small_cnn", {}),
        ("mobilenet_v2", {"alpha": 0.35, "weights": "imagenet"}),
        ("mobilenet", {"alpha": 0.25, "weights": "imagenet"}),
        ("efficientnetb0", {"weights": "none", "age_head": "regression"}),
    ],
)
def test_every_model_follows_the_contract(name, kwargs, real_batch):
    built = models.create_model(name, 112, GROUPS10.num_bins, **kwargs)
    assert built.model.input_shape == (None, 112, 112, 3)
    out = built.model.predict(real_batch, verbose=0)
    assert set(out) == {"age_bin", "age", "gender"}
    assert out["age_bin"].shape == (4, GROUPS10.num_bins)
    np.testing.assert_allclose(out["age_bin"].sum(axis=1), 1.0, rtol=1e-4)
    assert out["age"].shape == (4, 1) and out["gender"].shape == (4, 1)
    assert ((out["gender"] >= 0) & (out["gender"] <= 1)).all()
    if kwargs.get("age_head", "dex") == "dex":
        assert ((out["age"] >= 0) & (out["age"] <= models.DEX_MAX_AGE)).all()


def test_baseline_cnn_sees_64px_grayscale():
    built = models.create_model("baseline_cnn", 112, 10)
    names = [layer.name for layer in built.features.layers]
    assert {"grayscale", "resize_64", "conv32", "conv64", "conv128", "trunk_dropout"} <= set(names)
    assert built.features.get_layer("resize_64").output.shape[1:] == (64, 64, 1)
    assert built.heads.get_layer("age_hidden").units == built.heads.get_layer("gender_hidden").units == 128


def test_imagenet_weights_change_the_features(real_batch):
    pretrained = models.create_model("mobilenet_v2", 112, 10, alpha=0.35, weights="imagenet")
    random = models.create_model("mobilenet_v2", 112, 10, alpha=0.35, weights="none")
    a = pretrained.features.predict(real_batch, verbose=0)
    b = random.features.predict(real_batch, verbose=0)
    assert not np.allclose(a, b)


def test_saved_model_loads_and_predicts_the_same(tmp_path, real_batch):
    built = models.create_model("mobilenet_v2", 112, 10, alpha=0.35, weights="imagenet")
    path = save_model(built.model, tmp_path / "model.keras", {"bins": "groups10", "image_size": 112})
    loaded, sidecar = load_model(path)
    assert sidecar == {"bins": "groups10", "image_size": 112}
    before, after = built.model.predict(real_batch, verbose=0), loaded.predict(real_batch, verbose=0)
    for key in before:
        np.testing.assert_allclose(before[key], after[key], rtol=1e-5, atol=1e-5)
    assert not list(tmp_path.glob(".*tmp*"))  # no temp files left behind


def test_unfreeze_top_opens_only_top_layers_and_keeps_batchnorm_frozen():
    built = models.create_model("mobilenet_v2", 112, 10, alpha=0.35, weights="imagenet")
    frozen_count = len(built.model.trainable_weights)
    opened = models.unfreeze_top(built.backbone, 20)
    assert opened > 0
    assert len(built.model.trainable_weights) > frozen_count
    top = built.backbone.layers[-20:]
    bottom = built.backbone.layers[:-20]
    assert not any(layer.trainable for layer in bottom)
    assert all(not layer.trainable for layer in top if "BatchNormalization" in type(layer).__name__)


def test_missing_weights_fail_in_one_clear_line():
    if models.weights_file("vgg16", 0.0).exists():
        pytest.skip("VGG16 weights are cached here")
    with pytest.raises(models.WeightsUnavailable) as caught:
        models.create_model("vgg16", 112, 10, weights="imagenet")
    message = str(caught.value)
    assert "\n" not in message and "vgg16" in message and "weights=none" in message
