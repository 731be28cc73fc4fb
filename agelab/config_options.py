"""The training options: every ``train`` key with its default, allowed values, help and group.

The groups (:data:`GROUPS`) are what ``train --help`` and the Train page show under their headings:
data, model, training, augmentation, experimental. An experimental key is a recipe experiment that
did not make the shipped models (docs/recipes.md says how it was measured); it stays for other data,
with the reason in its help.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agelab.bins import BUILTIN_SCHEMES

# baseline_cnn: the original project's CNN (64x64 grayscale), kept as the baseline to beat.
MODELS = (
    "baseline_cnn",
    "small_cnn",
    "mobilenet_v2",
    "mobilenet",
    "face_mobilenet",
    "vgg16",
    "resnet50",
    "efficientnetb0",
)
# Models with a pretrained backbone (ImageNet; faces for face_mobilenet): these can be frozen,
# fine-tuned and used in fast mode.
PRETRAINED_MODELS = ("mobilenet_v2", "mobilenet", "face_mobilenet", "vgg16", "resnet50", "efficientnetb0")
ALPHAS = {"mobilenet_v2": (0.35, 0.5, 0.75, 1.0, 1.3, 1.4), "mobilenet": (0.25, 0.5, 0.75, 1.0)}
DEFAULT_ALPHA = {"mobilenet_v2": 0.35, "mobilenet": 0.25}
# Keras downloads a separate weights file for these MobileNet input sizes; other sizes reuse the
# cached 224 file, so they work offline.
DOWNLOADING_SIZES = (96, 128, 160, 192)
REBALANCE = ("none", "undersample", "oversample", "class_weights")
AGE_HEADS = ("dex", "regression")
WEIGHTS = ("imagenet", "none")
CACHE_MODES = ("auto", "memory", "disk")
CROPS = ("aligned", "none")
# A run needs a few images in each of its train, val and test splits.
MIN_IMAGES = 20
# The largest seed NumPy's legacy generators (and so the split and the subset) accept.
MAX_SEED = 2**32 - 1
# The run folder's name must fit in a file name (255 bytes) with its number.
MAX_NAME = 100


@dataclass(frozen=True)
class Option:
    default: Any
    kind: str  # "str", "int", "float", "bool", "choice", "bins", "alpha"
    help: str
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None

    def allowed(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(map(str, self.choices))
        if self.kind == "bool":
            return "true or false"
        if self.kind == "bins":
            return f"{', '.join(BUILTIN_SCHEMES)} or comma-separated edges such as 0,3,13,20,40,60"
        if self.kind == "alpha":
            return "a MobileNet width: " + "; ".join(
                f"{m}: {', '.join(map(str, a))}" for m, a in ALPHAS.items()
            )
        bounds = []
        if self.minimum is not None:
            bounds.append(f">= {self._bound(self.minimum)}")
        if self.maximum is not None:
            bounds.append(f"<= {self._bound(self.maximum)}")
        noun = {"int": "an integer", "float": "a number", "str": "text"}[self.kind]
        return noun + (" " + " and ".join(bounds) if bounds else "")

    def _bound(self, value: float) -> str:
        # An integer bound in full: :g would write the largest seed as 4.29497e+09.
        return str(int(value)) if self.kind == "int" else f"{value:g}"


OPTIONS: dict[str, Option] = {
    "recipe": Option("none", "choice", "named preset applied before other keys", ()),
    "data": Option(
        "",
        "str",
        "training data: a UTKFace folder or a folder with labels.csv, or several comma-separated "
        "(empty: AGELAB_DATA or data/UTKFace)",
    ),
    "source_weights": Option(
        "",
        "str",
        "loss weight of each data= folder's faces, comma-separated in data='s order (empty: 1 each)",
    ),
    "name": Option("", "str", "run name; the folder is runs/<name>-<n> (empty: the model name)"),
    "exclude": Option(
        "", "str", "a marks CSV (Review's 'label looks wrong' export): its files are left out (empty: none)"
    ),
    "model": Option("mobilenet_v2", "choice", "architecture", MODELS),
    "alpha": Option(0.0, "alpha", "MobileNet width multiplier (0: the model's default)"),
    "weights": Option(
        "imagenet",
        "choice",
        "backbone initial weights (imagenet: pretrained; faces for face_mobilenet)",
        WEIGHTS,
    ),
    "image_size": Option(
        112,
        "int",
        "input side in pixels (ImageNet MobileNets: 112, 144 or 224 work offline; face_mobilenet: a multiple"
        " of 32; baseline_cnn: 64 or more)",
        (),
        32,
        512,
    ),
    "epochs": Option(8, "int", "epochs of the first stage (heads, or the whole net)", (), 1, 1000),
    "batch_size": Option(64, "int", "batch size", (), 1, 4096),
    "learning_rate": Option(1e-3, "float", "learning rate of the first stage", (), 1e-7, 1.0),
    "fine_tune_layers": Option(
        0,
        "int",
        "top backbone layers unfrozen in stage 2 (0: no stage 2; the backbone's depth or more: all of it)",
        (),
        0,
        1000,
    ),
    "fine_tune_epochs": Option(3, "int", "epochs of the fine-tuning stage", (), 0, 1000),
    "fine_tune_learning_rate": Option(1e-4, "float", "learning rate while fine-tuning", (), 1e-8, 1.0),
    "lr_schedule": Option("constant", "choice", "learning rate over each stage", ("constant", "cosine")),
    "bins": Option("groups10", "bins", "age-bin scheme"),
    "rebalance": Option("none", "choice", "class balance of the training split", REBALANCE),
    "rebalance_by_race": Option(False, "bool", "balance bin x ethnicity cells instead of bins"),
    "rebalance_power": Option(
        1.0,
        "float",
        "class_weights only: how far toward balance (1: every group weighs the same; 0.5: the square root)",
        (),
        0.0,
        1.0,
    ),
    "augment": Option(True, "bool", "augment training images (never val/test)"),
    "aug_flip": Option(True, "bool", "random horizontal flip"),
    "aug_rotation": Option(0.05, "float", "max rotation, fraction of a full turn", (), 0.0, 0.5),
    "aug_zoom": Option(0.1, "float", "max zoom fraction", (), 0.0, 0.9),
    "aug_contrast": Option(0.1, "float", "max contrast change", (), 0.0, 1.0),
    "aug_brightness": Option(0.1, "float", "max brightness change", (), 0.0, 1.0),
    "aug_shift": Option(0.0, "float", "max shift, fraction of the side", (), 0.0, 0.5),
    "aug_color": Option(0.0, "float", "max per-channel gain change (white balance)", (), 0.0, 1.0),
    "aug_blur": Option(0.0, "float", "fraction of images softened by down-and-up scaling", (), 0.0, 1.0),
    "mixup": Option(
        0.0,
        "float",
        "mixup: blend each training face and its targets with another face's, share ~ Beta(a, a) (0: off)",
        (),
        0.0,
        2.0,
    ),
    "keep": Option(
        "best",
        "choice",
        "weights saved: the epoch of the best validation loss, or the last epoch",
        ("best", "last"),
    ),
    "keep_checkpoints": Option(
        2,
        "int",
        "per-epoch checkpoints kept in the run's checkpoints/ (the last ones; 0: none, no resume)",
        (),
        0,
        1000,
    ),
    "crop": Option(
        "aligned",
        "choice",
        "training input: the face detector's aligned crop, as predict makes it, or the file as it is",
        CROPS,
    ),
    "fast": Option(False, "bool", "train the heads on cached frozen-backbone features"),
    "max_images": Option(0, "int", "stratified subset of the dataset for quick runs (0: all)", (), 0, None),
    # NumPy and TensorFlow take a seed below 2**32; a larger one failed only once the run had started.
    "seed": Option(0, "int", "random seed", (), 0, MAX_SEED),
    "deterministic": Option(
        True, "bool", "TensorFlow's op determinism: one seed gives the same model (false: a little faster)"
    ),
    "age_head": Option(
        "dex", "choice", "age in years: DEX expected value over 0-100, or regression", AGE_HEADS
    ),
    "loss_weight_age_bin": Option(1.0, "float", "loss weight of the age-bin head", (), 0.0, 100.0),
    "soft_bins": Option(
        0.0,
        "float",
        "spread of the age-bin targets over neighbouring bins, in bins (0: one-hot)",
        (),
        0.0,
        3.0,
    ),
    "teacher": Option(
        "",
        "str",
        "a trained model whose predictions the run learns beside the labels (distillation; empty: none)",
    ),
    "teacher_weight": Option(
        0.5, "float", "share of the teacher's predictions in each head's target", (), 0.0, 1.0
    ),
    "loss_weight_age": Option(0.05, "float", "loss weight of the age-in-years head", (), 0.0, 100.0),
    "loss_weight_gender": Option(1.0, "float", "loss weight of the gender head", (), 0.0, 100.0),
    "dropout": Option(0.3, "float", "dropout before the heads", (), 0.0, 0.9),
    "head_units": Option(128, "int", "units of each head's hidden Dense layer", (), 1, 4096),
    "early_stopping": Option(
        0, "int", "stop a stage after this many epochs without val_loss gain (0: off)", (), 0, None
    ),
    "cache": Option("auto", "choice", "where decoded images are cached", CACHE_MODES),
    "mixed_precision": Option(False, "bool", "float16 compute on GPU (ignored on CPU)"),
    # What a Ray cluster reserves for the run (entrypoint_num_gpus/cpus); local runs ignore them.
    "num_gpus": Option(
        0.0, "float", "GPUs a Ray run reserves (fractions share one; local: ignored)", (), 0.0, 64.0
    ),
    "num_cpus": Option(1.0, "float", "CPUs a Ray run reserves (local: ignored)", (), 0.0, 1024.0),
    "gpus": Option(
        -1,
        "int",
        "GPUs the run uses of those it sees (-1: all; 0: none, they are hidden from it)",
        (),
        -1,
        64,
    ),
    "gpu_memory_mb": Option(
        0,
        "int",
        "memory limit on each GPU in MB, for runs sharing one (0: memory grows as needed)",
        (),
        0,
        1_000_000,
    ),
    "threads": Option(
        0,
        "int",
        "TensorFlow's intra- and inter-op threads (0: one per core; on Ray: num_cpus)",
        (),
        0,
        1024,
    ),
}

# Each key's heading in ``train --help`` and on the Train page, in the order shown.
GROUPS: dict[str, tuple[str, ...]] = {
    "data": (
        "recipe",
        "data",
        "source_weights",
        "name",
        "exclude",
        "bins",
        "crop",
        "max_images",
        "rebalance",
    ),
    "model": ("model", "alpha", "weights", "image_size", "age_head", "dropout", "head_units"),
    "training": (
        "epochs",
        "batch_size",
        "learning_rate",
        "lr_schedule",
        "fine_tune_layers",
        "fine_tune_epochs",
        "fine_tune_learning_rate",
        "keep",
        "keep_checkpoints",
        "early_stopping",
        "loss_weight_age_bin",
        "loss_weight_age",
        "loss_weight_gender",
        "fast",
        "seed",
        "deterministic",
        "cache",
        "mixed_precision",
        "num_gpus",
        "num_cpus",
        "gpus",
        "gpu_memory_mb",
        "threads",
    ),
    "augmentation": (
        "augment",
        "aug_flip",
        "aug_rotation",
        "aug_zoom",
        "aug_contrast",
        "aug_brightness",
        "aug_shift",
        "aug_color",
        "aug_blur",
    ),
    "experimental": (
        "soft_bins",
        "teacher",
        "teacher_weight",
        "mixup",
        "rebalance_power",
        "rebalance_by_race",
    ),
}
GROUP_OF = {key: group for group, keys in GROUPS.items() for key in keys}
# Why each experiment is not in the shipped recipes (docs/recipes.md has the measurements).
EXPERIMENTAL_REASONS = {
    "soft_bins": "no gain beyond the seed's noise, and an under-confident bin head",
    "teacher": "a student of the face model gained under 0.2 years on the same run without a teacher and stayed a year behind the face model",
    "teacher_weight": "goes with teacher",
    "mixup": "mixed changes inside the seeds' noise (better calibrated before scaling)",
    "rebalance_power": "worse everywhere on UTKFace's mix; kept for data with another mix",
    "rebalance_by_race": "worse everywhere on UTKFace's mix; kept for data with another mix",
}


def suggest(word: str, candidates: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the candidate closest to ``word``, or "" when none is close: for a
    misspelt key or choice here, and for a misspelt verb (:mod:`agelab.cli`)."""
    close = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


def options_help(recipes: dict[str, dict[str, Any]] | None = None) -> str:
    """The ``--help`` text listing every key under its group's heading, with its default and allowed
    values, then the named ``recipes``."""
    lines = []
    for group, keys in GROUPS.items():
        lines.append(f"{group}:" if group != "experimental" else "experimental (not in the shipped recipes):")
        for key in keys:
            option = OPTIONS[key]
            reason = f" [not kept: {EXPERIMENTAL_REASONS[key]}]" if key in EXPERIMENTAL_REASONS else ""
            lines.append(
                f"  {key:<24} default {option.default!r:<14} {option.help}; {option.allowed()}{reason}"
            )
        lines.append("")
    if recipes:
        lines.append("recipes: " + "; ".join(f"{n}: {json.dumps(r)}" for n, r in recipes.items()))
    return "\n".join(lines)
