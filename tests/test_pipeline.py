"""The tf.data pipeline on real UTKFace images."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from agelab import models, pipeline
from agelab.bins import GROUPS10
from agelab.saved_split import load_dataset
from tests.real_data import copy_real_images

import tensorflow as tf  # noqa: E402  isort: skip  (after agelab, which must load first)


@pytest.fixture(scope="module")
def frame(utkface_dir, tmp_path_factory) -> pd.DataFrame:
    folder = tmp_path_factory.mktemp("utk")
    copy_real_images(utkface_dir, folder, 120, step=150)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AGELAB_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        return load_dataset(folder)


def test_decode_resizes_real_jpegs_to_uint8(frame):
    image = pipeline.decode_image(frame["path"].iloc[0], 112).numpy()
    assert image.shape == (112, 112, 3) and image.dtype == np.uint8
    assert image.std() > 10  # a real face, not a blank


def test_training_dataset_batches_labels_and_repeats(frame):
    ds, steps = pipeline.image_dataset(
        frame, GROUPS10, 64, 32, training=True, augmentation=pipeline.Augmentation(), seed=1
    )
    assert steps == -(-len(frame) // 32)
    batches = list(ds.take(steps * 2))  # repeats: a second pass follows without a new iterator
    images, labels = batches[0]
    assert images.dtype.name == "float32" and images.shape[1:] == (64, 64, 3)
    assert float(images.numpy().min()) >= 0 and float(images.numpy().max()) <= 255
    assert set(labels) == {"age_bin", "age", "gender"}
    seen = np.concatenate([b[1]["age"].numpy().ravel() for b in batches[:steps]])
    assert sorted(seen) == sorted(frame["age"].astype(float))  # one pass is exactly the data


def test_augmentation_only_for_training(frame):
    small = frame.head(8)
    kwargs = dict(scheme=GROUPS10, image_size=64, batch_size=8, cache="none", repeat=False)
    plain = next(iter(pipeline.image_dataset(small, training=False, **kwargs)[0]))[0].numpy()
    again = next(iter(pipeline.image_dataset(small, training=False, **kwargs)[0]))[0].numpy()
    np.testing.assert_array_equal(plain, again)
    augmented = pipeline.image_dataset(
        small, training=True, augmentation=pipeline.Augmentation(flip=True, rotation=0.1), seed=3, **kwargs
    )[0]
    aug_images, aug_labels = next(iter(augmented))
    # The same eight faces (training shuffles them), and every one of them changed.
    assert sorted(aug_labels["age"].numpy().ravel()) == sorted(small["age"].astype(float))
    assert not any(np.allclose(image, original) for image in aug_images.numpy() for original in plain)


def test_sample_weights_travel_with_the_batch(frame):
    weights = np.linspace(0.5, 2.0, len(frame))
    ds, _ = pipeline.image_dataset(frame, GROUPS10, 32, 16, training=False, weights=weights, repeat=False)
    got = np.concatenate([w.numpy() for _, _, w in ds])
    np.testing.assert_allclose(got, weights.astype("float32"))


def test_stratified_subset_keeps_proportions(utkface_dir, isolated_dirs):
    full = load_dataset(utkface_dir)
    subset = pipeline.stratified_subset(full, 2000, GROUPS10, seed=0)
    assert len(subset) == 2000 and subset["path"].is_unique
    for column in ("split", "gender"):
        expected = full[column].value_counts(normalize=True)
        got = subset[column].value_counts(normalize=True)
        assert (got - expected).abs().max() < 0.02
    bins_full = pd.Series(GROUPS10.bin_of(full["age"])).value_counts(normalize=True)
    bins_sub = pd.Series(GROUPS10.bin_of(subset["age"])).value_counts(normalize=True)
    assert (bins_sub - bins_full).abs().max() < 0.02


def test_features_are_computed_once_then_read_from_the_cache(frame, isolated_dirs):
    features, _ = models.build_features("mobilenet_v2", 112, 0.35, "imagenet")
    key = {"model": "mobilenet_v2", "alpha": "a0.35", "size": 112, "weights": "imagenet"}
    part = frame.head(40)
    first, cached = pipeline.cached_features(features, part, 112, key)
    assert not cached and first.shape == (40, 1280)
    assert list((isolated_dirs / "cache" / "features").glob("*.npz"))
    # Rows repeated and reordered (as oversampling does) map to the same vectors.
    shuffled = pd.concat([part.iloc[::-1], part.head(5)])
    second, cached = pipeline.cached_features(features, shuffled, 112, key)
    assert cached
    np.testing.assert_allclose(second[:40], first[::-1], rtol=1e-6)
    np.testing.assert_allclose(second[40:], first[:5], rtol=1e-6)


def test_disk_cache_holds_the_decoded_images(frame, isolated_dirs):
    cache = pipeline.DiskCache()
    try:
        small = frame.head(20)
        kwargs = dict(scheme=GROUPS10, image_size=48, batch_size=10, training=False, repeat=False)
        ds, _ = pipeline.image_dataset(small, cache=cache.file("val"), **kwargs)
        first = np.concatenate([x.numpy() for x, _ in ds])
        assert list(cache.folder.glob("val*"))  # tf.data wrote its cache files
        again = np.concatenate([x.numpy() for x, _ in ds])
        np.testing.assert_array_equal(first, again)
        uncached = np.concatenate(
            [x.numpy() for x, _ in pipeline.image_dataset(small, cache="none", **kwargs)[0]]
        )
        np.testing.assert_array_equal(first, uncached)
    finally:
        cache.close()
    assert not cache.folder.exists()
    assert pipeline.choose_cache("auto", 1000, 112) == "memory"
    assert pipeline.choose_cache("auto", 10**6, 224) == "disk"


def test_geometry_augmentation_flips_about_half_exactly_and_keeps_the_rest():
    images = np.random.default_rng(0).uniform(0, 255, (256, 32, 40, 3)).astype("float32")
    untouched = pipeline.RandomGeometry(False, 0.0, 0.0)(tf.constant(images)).numpy()
    np.testing.assert_array_equal(untouched, images)
    out = pipeline.RandomGeometry(True, 0.0, 0.0, seed=5)(tf.constant(images)).numpy()
    mirrored = [np.allclose(o, i[:, ::-1]) for o, i in zip(out, images)]
    same = [np.allclose(o, i) for o, i in zip(out, images)]
    assert all(m or s for m, s in zip(mirrored, same))
    assert 100 < sum(mirrored) < 156  # a fair coin per image
    unaugmented = pipeline.RandomGeometry(True, 0.1, 0.1)(tf.constant(images), training=False)
    np.testing.assert_array_equal(unaugmented.numpy(), images)


def test_geometry_augmentation_rotates_a_real_face_and_reflects_the_border(frame):
    face = pipeline.decode_image(frame["path"].iloc[0], 64).numpy().astype("float32")
    batch = tf.constant(np.stack([face] * 8))
    # A quarter turn at most: each image turns by its own angle, and no corner is left empty.
    out = pipeline.RandomGeometry(False, 0.25, 0.0, seed=1)(batch).numpy()
    assert out.shape == batch.shape
    assert len({round(float(np.abs(o - face).mean()), 3) for o in out}) == 8
    assert (out[:, :3, :3].max(axis=(1, 2, 3)) > 0).all()
    zoomed = pipeline.RandomGeometry(False, 0.0, 0.3, seed=2)(batch).numpy()
    assert not np.allclose(zoomed, face) and float(zoomed.min()) >= 0 and float(zoomed.max()) <= 255


def test_tone_augmentation_shifts_brightness_and_scales_contrast_about_the_mean():
    images = np.random.default_rng(1).uniform(80, 170, (64, 16, 16, 3)).astype("float32")
    batch = tf.constant(images)
    np.testing.assert_allclose(pipeline.RandomTone(0.0, 0.0)(batch).numpy(), images)
    brighter = pipeline.RandomTone(0.0, 0.1, seed=3)(batch).numpy() - images
    per_image = brighter.reshape(64, -1)
    np.testing.assert_allclose(per_image.std(axis=1), 0, atol=1e-3)  # one shift per image
    assert np.abs(per_image[:, 0]).max() <= 25.5 and per_image[:, 0].std() > 5
    contrasted = pipeline.RandomTone(0.3, 0.0, seed=4)(batch).numpy()
    np.testing.assert_allclose(contrasted.mean(axis=(1, 2)), images.mean(axis=(1, 2)), atol=1e-2)
    spread = contrasted.std(axis=(1, 2, 3)) / images.std(axis=(1, 2, 3))
    assert spread.min() >= 0.69 and spread.max() <= 1.31 and spread.std() > 0.05
    assert pipeline.RandomTone(0.5, 0.5)(tf.constant(images * 0 + 250), training=True).numpy().max() <= 255
