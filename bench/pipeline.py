"""Does the input pipeline keep the model busy? Training images/s for one model, fed three ways:

1. our tf.data pipeline (decode once, cache, shuffle, augment, batch, prefetch, repeat);
2. in-memory tensors, already decoded: the limit the model itself sets;
3. the seeds' approach, ``ImageDataGenerator.flow_from_dataframe`` with their augmentations
   (Keras 3 dropped it from the public API; it lives on in ``keras.src.legacy``).

Each is timed over whole epochs after a warm-up epoch (which, for ours, fills the cache).

    python bench/pipeline.py [--images 2000] [--model mobilenet_v2] [--size 112] [--batch 64]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import agelab  # noqa: E402, F401  (KERAS_HOME)
from agelab import models, pipeline  # noqa: E402
from agelab.bins import GROUPS10  # noqa: E402
from agelab.paths import data_dir  # noqa: E402
from agelab.saved_split import load_dataset  # noqa: E402
from agelab.training.stages import compile_model  # noqa: E402

import keras  # noqa: E402  isort: skip


class EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = getattr(self, "seconds", []) + [time.perf_counter() - self.start]


def fresh_model(args, config):
    keras.utils.set_random_seed(0)
    built = models.create_model(
        args.model, args.size, GROUPS10.num_bins, alpha=args.alpha, weights="imagenet"
    )
    if built.backbone is not None and args.fine_tune_layers:
        models.unfreeze_top(built.backbone, args.fine_tune_layers)
    compile_model(built.model, 1e-4, config)
    return built.model


def timed_fit(model, data, steps, epochs, n_images) -> float:
    """Images/s over the epochs after the first."""
    timer = EpochTimer()
    model.fit(data, steps_per_epoch=steps, epochs=epochs, callbacks=[timer], verbose=0)
    return n_images * (epochs - 1) / sum(timer.seconds[1:])


def seed_generator(frame, args):
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    # The seeds' augmentations: rotation, shifts, zoom and horizontal flips.
    generator = ImageDataGenerator(
        rotation_range=15, width_shift_range=0.1, height_shift_range=0.1, zoom_range=0.1, horizontal_flip=True
    )
    frame = frame.assign(age_bin=GROUPS10.bin_of(frame["age"]), age_f=frame["age"].astype("float32"))
    flow = generator.flow_from_dataframe(
        frame,
        x_col="path",
        y_col=["age_bin", "age_f", "gender"],
        class_mode="multi_output",
        target_size=(args.size, args.size),
        batch_size=args.batch,
        shuffle=True,
        seed=0,
        validate_filenames=False,
    )

    def batches():
        while True:
            images, (age_bin, age, gender) = next(flow)
            yield (
                images,
                {"age_bin": age_bin, "age": age[:, None], "gender": gender[:, None].astype("float32")},
            )

    return batches()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(data_dir()))
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--alpha", type=float, default=0.35)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--fine-tune-layers", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs + 1 warm-up")
    args = parser.parse_args()

    from agelab.config import build_config

    config = build_config({"model": args.model, "alpha": args.alpha, "image_size": args.size})
    frame = load_dataset(Path(args.data))
    frame = pipeline.stratified_subset(frame[frame["split"] == "train"], args.images, GROUPS10, seed=0)
    n = len(frame)
    steps = -(-n // args.batch)
    print(f"{args.model} a={args.alpha} {args.size}px, top {args.fine_tune_layers} layers trainable, "
          f"{n} real images, batch {args.batch}, {steps} steps/epoch, {args.epochs - 1} timed epochs")  # fmt: skip

    results: dict[str, float] = {}

    # The limit: decoded images already in memory, no augmentation, no decoding.
    decoded, _ = pipeline.image_dataset(
        frame, GROUPS10, args.size, args.batch, training=False, cache="none", repeat=False, with_labels=False
    )
    images = np.concatenate([b.numpy() for b in decoded])
    labels = pipeline.labels_of(frame, GROUPS10)
    import tensorflow as tf

    tensors = tf.data.Dataset.from_tensor_slices((images, labels)).batch(args.batch).repeat().prefetch(2)
    results["in-memory tensors (limit)"] = timed_fit(
        fresh_model(args, config), tensors, steps, args.epochs, n
    )

    ours, _ = pipeline.image_dataset(
        frame,
        GROUPS10,
        args.size,
        args.batch,
        training=True,
        augmentation=pipeline.Augmentation(),
        cache="memory",
    )
    results["agelab tf.data + augmentation"] = timed_fit(
        fresh_model(args, config), ours, steps, args.epochs, n
    )

    plain, _ = pipeline.image_dataset(frame, GROUPS10, args.size, args.batch, training=True, cache="memory")
    results["agelab tf.data, no augmentation"] = timed_fit(
        fresh_model(args, config), plain, steps, args.epochs, n
    )

    results["ImageDataGenerator (seeds)"] = timed_fit(
        fresh_model(args, config), seed_generator(frame, args), steps, args.epochs, n
    )

    limit = results["in-memory tensors (limit)"]
    seeds = results["ImageDataGenerator (seeds)"]
    print(f"\n{'feed':<34} {'images/s':>9} {'x limit':>8} {'x seeds':>8}")
    for name, rate in results.items():
        print(f"{name:<34} {rate:>9.1f} {rate / limit:>8.2f} {rate / seeds:>8.2f}")


if __name__ == "__main__":
    main()
