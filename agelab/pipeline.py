"""The tf.data input pipeline: decode once, resize, cache, shuffle, augment, batch, prefetch.

Training and validation datasets repeat forever and are read with ``steps_per_epoch``: with a
finite dataset ``fit()`` paused 3-5 s at the start of some epochs while it rebuilt the iterator.
Batching comes before ``repeat()`` so each "epoch" of ``ceil(n / batch)`` steps is one exact pass.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import agelab  # noqa: F401  (sets KERAS_HOME before keras is imported)
from agelab import atomic
from agelab.augmentation import Augmentation, RandomGeometry, RandomSoften, RandomTone  # noqa: F401
from agelab.bins import BinScheme
from agelab.paths import cache_dir
from agelab.processes import pid_alive

import keras  # noqa: E402  isort: skip
import tensorflow as tf  # noqa: E402  isort: skip

AUTOTUNE = tf.data.AUTOTUNE
# Decoded images are cached as uint8; above this many bytes they go to disk instead of memory.
MEMORY_CACHE_LIMIT = 3 * 1024**3
SHUFFLE_BUFFER = 4096
# How decode_image makes a model input; a new one invalidates the cached features.
INPUT_VERSION = "model_input-1"


def stratified_subset(frame: pd.DataFrame, count: int, scheme: BinScheme, seed: int = 0) -> pd.DataFrame:
    """``count`` rows keeping the proportions of split x age bin x gender."""
    if count <= 0 or count >= len(frame):
        return frame
    shuffled = frame.sample(frac=1.0, random_state=seed)
    strata = [
        shuffled["split"].to_numpy() if "split" in shuffled else np.zeros(len(shuffled)),
        scheme.bin_of(shuffled["age"].to_numpy()),
        shuffled["gender"].to_numpy(),
    ]
    groups = shuffled.groupby(strata, sort=False)
    # Position within its stratum as a fraction: taking the smallest fractions first fills every
    # stratum in proportion to its size.
    fraction = (groups.cumcount().to_numpy() + 0.5) / groups["age"].transform("size").to_numpy()
    order = np.argsort(fraction, kind="stable")[:count]
    return shuffled.iloc[np.sort(order)].reset_index(drop=True)


def labels_of(frame: pd.DataFrame, scheme: BinScheme) -> dict[str, np.ndarray]:
    return {
        "age_bin": scheme.bin_of(frame["age"].to_numpy()).astype("int32"),
        "age": frame["age"].to_numpy().astype("float32")[:, None],
        "gender": frame["gender"].to_numpy().astype("float32")[:, None],
    }


def input_paths(frame: pd.DataFrame) -> np.ndarray:
    """The file each row's model input is read from: its aligned crop (``input``, made by
    :mod:`agelab.crop_cache`) when the frame has one, else the image itself."""
    column = "input" if "input" in frame else "path"
    return frame[column].astype(str).to_numpy()


def decodable(frame: pd.DataFrame, log: Callable[[str], None] = print) -> pd.DataFrame:
    """``frame`` without the rows whose input file does not decode, each logged by name.

    Every input is decoded once here, before a dataset is built, because an image that fails inside
    tf.data (in :func:`decode_image`'s ``numpy_function``) does not end as a plain error: the run
    failed and its process then aborted (SIGABRT) or never exited.
    """
    from concurrent.futures import ThreadPoolExecutor

    from agelab.images import ImageError, load_image

    def problem(path: str) -> str:
        try:
            load_image(path)
        except ImageError as err:
            return str(err)
        return ""

    paths = input_paths(frame)
    unique = sorted(set(paths))
    # Pillow decodes outside the GIL, so threads use every core.
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        problems = {path: why for path, why in zip(unique, pool.map(problem, unique)) if why}
    if not problems:
        return frame
    for why in problems.values():
        log(f"skipped {why}")
    log(f"left out {len(problems)} image(s) that do not decode; replace or remove them")
    return frame[~np.isin(paths, list(problems))].reset_index(drop=True)


def decode_image(path: tf.Tensor, image_size: int) -> tf.Tensor:
    """A file -> an RGB uint8 image of ``image_size`` x ``image_size``, decoded and resized as every
    prediction's input is (:func:`agelab.images.load_image`, :func:`agelab.crop.model_input`): with
    TensorFlow's own resize a run's test scores and ``evaluate``'s differed on the same model and
    images. An aligned crop is stored at that size already and comes back unchanged (tests/test_crop.py)."""
    from agelab.crop import model_input
    from agelab.images import load_image

    def read(name: Any) -> np.ndarray:
        # bytes inside tf.data, a 0-d array when called eagerly
        return model_input(load_image(os.fsdecode(np.asarray(name).item())), image_size)

    image = tf.numpy_function(read, [path], tf.uint8, stateful=False)
    image.set_shape((image_size, image_size, 3))
    return image


class DiskCache:
    """A private folder for tf.data's file cache, removed when the run ends.

    Per process, because two runs writing one tf.data cache file collide on its lock.
    """

    def __init__(self) -> None:
        root = cache_dir() / "tfdata"
        root.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix=f"run{os.getpid()}-", dir=root))

    def file(self, name: str) -> str:
        return str(self.folder / name)

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def remove_orphan_caches(root: Path | None = None) -> list[Path]:
    """Delete tf.data cache folders (``<cache>/tfdata/run<pid>-*``) whose run process is gone.

    A run killed with ``cache=disk`` cannot clean its own (:class:`DiskCache`); the next run does.
    """
    root = Path(root or cache_dir() / "tfdata")
    removed = []
    for folder in root.glob("run*-*") if root.is_dir() else ():
        match = re.match(r"run(\d+)-", folder.name)
        if match and int(match[1]) != os.getpid() and not pid_alive(int(match[1])):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def choose_cache(mode: str, images: int, image_size: int) -> str:
    """``memory`` or ``disk`` for ``auto``, by the size of the decoded images."""
    if mode != "auto":
        return mode
    return "memory" if images * image_size * image_size * 3 <= MEMORY_CACHE_LIMIT else "disk"


def image_dataset(
    frame: pd.DataFrame,
    scheme: BinScheme,
    image_size: int,
    batch_size: int,
    *,
    training: bool,
    augmentation: Augmentation | None = None,
    cache: str = "memory",
    weights: np.ndarray | None = None,
    seed: int = 0,
    repeat: bool = True,
    with_labels: bool = True,
    labels: Callable[[pd.DataFrame], dict[str, np.ndarray]] | None = None,
    mix: Callable[..., Any] | None = None,
) -> tuple[tf.data.Dataset, int]:
    """A batched dataset of ``(image float32 0-255, labels[, sample_weight])`` and its steps per pass.

    ``cache`` is ``"memory"``, ``"none"`` or a file path prefix for a disk cache. Augmentation and
    shuffling apply only when ``training``. ``labels`` makes a frame's label arrays (default
    :func:`labels_of`; a distilled run packs the teacher's targets in). ``mix`` blends each augmented
    training batch (:func:`agelab.training.mixup.mixer`); it needs packed labels.
    """
    if training:
        # Shuffle the order once before caching, so the bounded shuffle buffer below mixes
        # an already random order (the frame is sorted by file name, i.e. by age).
        rows = frame.assign(_row=np.arange(len(frame))).sample(frac=1.0, random_state=seed)
        order = rows["_row"].to_numpy()
        frame = frame.iloc[order]
        if weights is not None:  # in the frame's new order, so each image keeps its own weight
            weights = np.asarray(weights)[order]
    ds = tf.data.Dataset.from_tensor_slices(input_paths(frame))
    ds = ds.map(lambda p: decode_image(p, image_size), num_parallel_calls=AUTOTUNE, deterministic=True)
    if cache == "memory":
        ds = ds.cache()
    elif cache not in ("none", "", None):
        ds = ds.cache(str(cache))
    if with_labels:
        arrays = labels(frame) if labels is not None else labels_of(frame, scheme)
        parts: tuple[tf.data.Dataset, ...] = (ds, tf.data.Dataset.from_tensor_slices(arrays))
        if weights is not None:
            parts += (tf.data.Dataset.from_tensor_slices(np.asarray(weights, dtype="float32")),)
        ds = tf.data.Dataset.zip(parts)
    if training:
        ds = ds.shuffle(min(len(frame), SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, num_parallel_calls=AUTOTUNE)
    ds = ds.map(_to_float(augmentation.layers(seed) if training and augmentation else None), AUTOTUNE)
    if training and mix is not None:
        ds = ds.map(mix, AUTOTUNE)
    if repeat:
        ds = ds.repeat()
    return ds.prefetch(AUTOTUNE), max(1, math.ceil(len(frame) / batch_size))


def _to_float(augment: Callable[..., tf.Tensor] | None) -> Callable[..., Any]:
    def convert(images, *rest):
        images = tf.cast(images, tf.float32)
        if augment is not None:
            images = augment(images, training=True)
        return (images, *rest) if rest else images

    return convert


def feature_dataset(
    features: np.ndarray,
    labels: dict[str, np.ndarray],
    batch_size: int,
    *,
    training: bool,
    weights: np.ndarray | None = None,
    seed: int = 0,
) -> tuple[tf.data.Dataset, int]:
    """Cached feature vectors as a repeating dataset, for training the heads in fast mode."""
    parts: tuple[Any, ...] = (features.astype("float32"), labels)
    if weights is not None:
        parts += (np.asarray(weights, dtype="float32"),)
    ds = tf.data.Dataset.from_tensor_slices(parts)
    if training:
        ds = ds.shuffle(len(features), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).repeat().prefetch(AUTOTUNE)
    return ds, max(1, math.ceil(len(features) / batch_size))


def feature_cache_path(key_parts: dict[str, Any], paths: list[str]) -> Path:
    """Feature cache file for one backbone, size and set of images."""
    # INPUT_VERSION: features cached from inputs decoded another way are not these images' features.
    digest = hashlib.sha1("\n".join([INPUT_VERSION, *sorted(paths)]).encode()).hexdigest()[:16]
    label = "-".join(f"{v}" for v in key_parts.values())
    return cache_dir() / "features" / f"{label}-{digest}.npz"


def cached_features(
    feature_model: keras.Model,
    frame: pd.DataFrame,
    image_size: int,
    key_parts: dict[str, Any],
    batch_size: int = 128,
    callbacks: list[keras.callbacks.Callback] | None = None,
) -> tuple[np.ndarray, bool]:
    """Frozen-backbone features of every row of ``frame`` (in its order), and whether they came
    from the cache. Computed once per backbone, size and image set, then read from disk."""
    inputs = input_paths(frame)
    unique_paths = sorted(set(inputs))
    path = feature_cache_path(key_parts, unique_paths)
    width = feature_model.output_shape[-1]
    try:
        with np.load(path, allow_pickle=False) as stored:
            names, vectors = stored["paths"], stored["features"]
        # Trusted only when it holds one vector of this backbone's width for each of these images:
        # another width failed in the heads, missing rows failed in the lookup below.
        from_cache = (
            vectors.ndim == 2
            and vectors.shape == (len(names), width)
            and len(names) == len(unique_paths)
            and set(names.tolist()) == set(unique_paths)
        )
    except Exception:  # noqa: BLE001  missing, truncated or garbage: computed again and replaced
        from_cache = False
    if not from_cache:
        ds, _ = image_dataset(
            pd.DataFrame({"path": unique_paths}),
            None,  # type: ignore[arg-type]
            image_size,
            batch_size,
            training=False,
            cache="none",
            repeat=False,
            with_labels=False,
        )
        vectors = feature_model.predict(ds, verbose=0, callbacks=callbacks or [])
        if len(vectors) != len(unique_paths):
            raise InterruptedError(
                f"feature extraction stopped after {len(vectors)} of {len(unique_paths)} images"
            )
        names = np.asarray(unique_paths)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                np.savez(handle, paths=names, features=vectors.astype("float32"))

        atomic.write_with(path, write)
    position = pd.Series(np.arange(len(names)), index=names)
    return vectors[position.loc[inputs].to_numpy()], from_cache
