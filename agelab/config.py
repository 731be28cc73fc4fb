"""Training configuration: the defaults, named recipes, ``key=value`` overrides and validation.

A config is a flat dict of plain JSON values. Every run saves its fully resolved config, and
``python -m agelab train --config runs/<run>/config.json`` repeats that run exactly.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agelab.bins import BUILTIN_SCHEMES, get_scheme

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
# The input sizes the Train page offers (any size from 32 to 512 is accepted): the baseline's 64, the
# ImageNet MobileNets' offline sizes, and the face MobileNet's multiples of 32.
COMMON_SIZES = (64, 112, 128, 144, 160, 224)
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


class ConfigError(ValueError):
    """A config that cannot run. The message names the key and what it accepts."""


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
    "image_size": Option(112, "int", "input side in pixels", (), 32, 512),
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
}

# What the shipped models' recipes share: a cosine schedule kept to its last epoch, the serving crop,
# a heavier gender loss, and the photo augmentation that made them hold up outside UTKFace's crops.
PHOTO_RECIPE: dict[str, Any] = {
    "lr_schedule": "cosine",
    "crop": "aligned",
    "keep": "last",
    "loss_weight_gender": 1.5,
    "aug_rotation": 0.03,
    "aug_shift": 0.04,
    "aug_color": 0.1,
    "aug_blur": 0.3,
}

# Named presets. ``default`` is the recipe of the shipped model.
RECIPES: dict[str, dict[str, Any]] = {
    # The shipped model (models/agelab-default.keras); see docs/recipes.md for what each choice bought.
    "default": {
        "model": "mobilenet_v2",
        "alpha": 0.5,
        "image_size": 144,
        "fast": True,
        "epochs": 5,
        # Every backbone layer (BatchNorm stays frozen): against the top 100, validation MAE -0.09 and
        # aaf-dev MAE -0.32 for 1.4x the epoch time (docs/recipes.md).
        "fine_tune_layers": 1000,
        "fine_tune_epochs": 30,
        "fine_tune_learning_rate": 4e-4,
        **PHOTO_RECIPE,
    },
    # The face-pretrained MobileNet fine-tuned on UTKFace plus All-Age-Faces (docs/recipes.md): its
    # frozen features train the heads first, then every layer (BatchNorm frozen) at a gentler rate than
    # an ImageNet backbone needs, since it already knows faces.
    "face": {
        "model": "face_mobilenet",
        "image_size": 128,
        "fast": True,
        "epochs": 5,
        "fine_tune_layers": 1000,
        "fine_tune_epochs": 12,
        "fine_tune_learning_rate": 2e-4,
        **PHOTO_RECIPE,
    },
    "quick": {"model": "mobilenet_v2", "alpha": 0.35, "image_size": 112, "fast": True, "epochs": 10},
    # The original project's setup, as a baseline.
    "baseline": {
        "model": "baseline_cnn",
        "weights": "none",
        "image_size": 64,
        "epochs": 30,
        "batch_size": 64,
        "learning_rate": 1e-3,
        "age_head": "regression",
        "augment": True,
    },
    "finetune": {
        "model": "mobilenet_v2",
        "alpha": 0.5,
        "image_size": 144,
        "epochs": 5,
        "fine_tune_layers": 40,
        "fine_tune_epochs": 5,
    },
}
OPTIONS["recipe"] = Option("none", "choice", "named preset applied before other keys", ("none", *RECIPES))

# Values renamed after runs had saved them (runs/*/config.json, model sidecars): an old name still
# loads, as the new one, so new runs write the new name. Bin schemes have theirs in agelab.bins.
RENAMED_VALUES: dict[str, dict[str, str]] = {
    "model": {"seed_cnn": "baseline_cnn"},
    "recipe": {"seed": "baseline"},
}


def default_config() -> dict[str, Any]:
    return {key: option.default for key, option in OPTIONS.items()}


def suggest(word: str, candidates: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the candidate closest to ``word``, or "" when none is close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


def unknown_key(key: str) -> ConfigError:
    return ConfigError(f"unknown key {key!r}.{suggest(key, OPTIONS)} Known keys: {', '.join(OPTIONS)}.")


_TRUE = {"true", "1", "yes", "on", "y"}
_FALSE = {"false", "0", "no", "off", "n"}


def _bad(key: str, value: Any, option: Option, extra: str = "") -> ConfigError:
    hint = suggest(value, option.choices) if option.kind == "choice" else ""
    return ConfigError(f"bad value {key}={value!r}: {key} takes {option.allowed()}.{extra}{hint}")


def coerce(key: str, value: Any) -> Any:
    """Turn ``value`` (a string from the command line, or a YAML/JSON value) into the key's type."""
    if key not in OPTIONS:
        raise unknown_key(key)
    option = OPTIONS[key]
    kind = option.kind
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise _bad(key, value, option)
    if kind in ("int", "float", "alpha"):
        if isinstance(value, bool):
            raise _bad(key, value, option)
        try:
            number = float(str(value).strip())
        except ValueError:
            raise _bad(key, value, option) from None
        if not math.isfinite(number):
            raise _bad(key, value, option, " NaN and infinity are not numbers a run can use.")
        if kind == "int":
            if number != int(number):
                raise _bad(key, value, option)
            number = int(number)
        if option.minimum is not None and number < option.minimum:
            raise _bad(key, value, option)
        if option.maximum is not None and number > option.maximum:
            raise _bad(key, value, option)
        return number
    if kind == "choice":
        text = str(value).strip()
        text = RENAMED_VALUES.get(key, {}).get(text, text)
        if text not in option.choices:
            raise _bad(key, value, option)
        return text
    if kind == "bins":
        try:
            return get_scheme(str(value)).spec
        except ValueError as err:
            raise ConfigError(f"bad value bins={value!r}: {err}") from None
    return "" if value is None else str(value)


def check_exclude(path: str) -> None:
    """``exclude`` must name a readable marks CSV with a ``file`` column."""
    from agelab.marks import excluded_files

    try:
        excluded_files(path)
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"bad value exclude={path!r}: {err}; give a marks CSV such as the Review page exports"
        ) from None


def check_combination(config: Mapping[str, Any]) -> None:
    """Rules that involve several keys."""
    if len(config["name"]) > MAX_NAME:
        raise ConfigError(
            f"bad value name={config['name'][:20]!r}... ({len(config['name'])} characters): name takes"
            f" at most {MAX_NAME} characters; use a shorter name"
        )
    if 0 < config["max_images"] < MIN_IMAGES:
        raise ConfigError(
            f"bad value max_images={config['max_images']}: a run needs at least {MIN_IMAGES} images to"
            f" fill its train, val and test splits; use max_images=0 (all) or >= {MIN_IMAGES}"
        )
    if config.get("exclude"):
        check_exclude(config["exclude"])
    if config["rebalance_power"] != 1 and config["rebalance"] != "class_weights":
        raise ConfigError(
            f"bad value rebalance_power={config['rebalance_power']:g}: it scales class weights, and"
            f" rebalance={config['rebalance']!r} has none; use rebalance=class_weights or rebalance_power=1"
        )
    model = config["model"]
    alpha = config["alpha"]
    if model in ALPHAS:
        if alpha and alpha not in ALPHAS[model]:
            raise ConfigError(
                f"bad value alpha={alpha:g}: {model} takes alpha in {', '.join(map(str, ALPHAS[model]))}"
            )
    elif alpha:
        raise ConfigError(
            f"bad value alpha={alpha:g}: only mobilenet and mobilenet_v2 take alpha; use alpha=0"
        )
    if model in ("baseline_cnn", "small_cnn"):
        if config["weights"] != "none":
            raise ConfigError(
                f"bad value weights={config['weights']!r}: {model} has no pretrained weights;"
                " use weights=none"
            )
        if config["fast"]:
            raise ConfigError(
                "bad value fast=true: fast mode caches a pretrained backbone's features and"
                f" {model} has none; use one of {', '.join(PRETRAINED_MODELS)}"
            )
        if config["fine_tune_layers"]:
            raise ConfigError(
                f"bad value fine_tune_layers={config['fine_tune_layers']}: {model} trains all its layers"
                " from the start; use fine_tune_layers=0"
            )
    if config["fast"] and config["weights"] == "none":
        raise ConfigError("bad value fast=true with weights=none: frozen random features teach nothing")
    if model in ALPHAS and config["weights"] == "imagenet" and config["image_size"] in DOWNLOADING_SIZES:
        raise ConfigError(
            f"bad value image_size={config['image_size']}: {model} would download extra ImageNet weights"
            f" for sizes {', '.join(map(str, DOWNLOADING_SIZES))}; use 112, 144 or 224 (offline cache)"
        )
    if model == "baseline_cnn" and config["image_size"] < 64:
        raise ConfigError(f"bad value image_size={config['image_size']}: baseline_cnn needs image_size >= 64")
    if model in PRETRAINED_MODELS and config["image_size"] < 32:
        raise ConfigError(f"bad value image_size={config['image_size']}: {model} needs image_size >= 32")


def build_config(
    overrides: Mapping[str, Any] | None = None, base: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Defaults, then the recipe, then ``base`` (a config file), then ``overrides``; validated.

    Raises :class:`ConfigError` naming the first bad key.
    """
    layers = [dict(base or {}), dict(overrides or {})]
    for layer in layers:
        for key in layer:
            if key not in OPTIONS:
                raise unknown_key(key)
    recipe = "none"
    for layer in layers:
        if "recipe" in layer:
            recipe = coerce("recipe", layer["recipe"])
    config = default_config()
    config.update(RECIPES.get(recipe, {}))
    config["recipe"] = recipe
    for layer in layers:
        for key, value in layer.items():
            config[key] = coerce(key, value)
    explicit = set(RECIPES.get(recipe, {})).union(*layers)
    if config["model"] not in PRETRAINED_MODELS and "weights" not in explicit:
        config["weights"] = "none"  # the default "imagenet" cannot apply to a net without weights
    if config["model"] in DEFAULT_ALPHA and not config["alpha"]:
        config["alpha"] = DEFAULT_ALPHA[config["model"]]
    check_combination(config)
    return config


def resolve_data(config: dict[str, Any]) -> dict[str, Any]:
    """Pin each ``data`` folder to an absolute path, so the saved config reproduces the run elsewhere
    (a URI stays as it is: each machine reads it into its own cache)."""
    from agelab.data_sources import comma_list
    from agelab.paths import data_dir
    from agelab.storage import is_uri

    config = dict(config)
    folders = comma_list(config.get("data"))
    config["data"] = ",".join(
        folder if is_uri(folder) else str(Path(folder).expanduser().resolve())
        for folder in folders or [str(data_dir())]
    )
    return config


def checked_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` validated, with ``data`` absolute folders of UTKFace images or labels.csv folders; else
    ConfigError. What a launch checks before it makes a run folder, so a bad config never makes one."""
    config = resolve_data(build_config(base=config))
    check_data(config)
    check_weights(config)
    return config


def check_weights(config: Mapping[str, Any]) -> None:
    """A pretrained backbone's weights file is on this machine, fetched once when it is not, so a run
    never starts only to fail on a download; ConfigError names the file to supply otherwise."""
    if config["model"] not in PRETRAINED_MODELS or config["weights"] == "none":
        return
    from agelab.backbone_weights import WeightsUnavailable, available_weights

    try:
        available_weights(config["model"], config["alpha"])
    except WeightsUnavailable as err:
        raise ConfigError(f"bad value model={config['model']}: {err}") from None


def check_data(config: Mapping[str, Any]) -> None:
    """Each ``data`` folder exists and holds UTKFace images or a readable ``labels.csv``; the weights fit."""
    from agelab.data import has_images
    from agelab.data_sources import SourceError, is_evaluation_only, parse_sources
    from agelab.labels_csv import LabelsError, is_labelled_folder, read_table

    try:
        sources = parse_sources(config["data"], config["source_weights"])
    except SourceError as err:
        raise ConfigError(f"bad value {err}") from None
    for source in sources:
        folder = str(source.folder)
        if source.folder.is_file():
            raise ConfigError(
                f"bad value data={folder!r}: that is a file; give the folder that holds the images "
                "(and its labels.csv, if any)"
            )
        if not source.folder.is_dir():
            raise ConfigError(f"bad value data={folder!r}: no such folder")
        if is_evaluation_only(source.folder):
            raise ConfigError(
                f"bad value data={folder!r}: its SOURCE.md (or README.md) says it is for evaluation only; "
                "score models on it with `python -m agelab evaluate --data` and leave it out of data="
            )
        if is_labelled_folder(source.folder):
            try:
                read_table(source.folder / "labels.csv")
            except LabelsError as err:
                raise ConfigError(f"bad value data={folder!r}: {err}") from None
        elif not has_images(source.folder):
            raise ConfigError(
                f"bad value data={folder!r}: the folder has no labels.csv and no well-named UTKFace image"
                " (age_gender_race_datetime.jpg.chip.jpg); add a labels.csv with file,age_low,age_high,gender"
                " or point it at the UTKFace images"
            )


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    """``["epochs=3", "model=baseline_cnn"]`` -> ``{"epochs": "3", "model": "baseline_cnn"}``."""
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"bad argument {item!r}: expected key=value, e.g. epochs=3")
        key, value = item.split("=", 1)
        key = key.strip().lstrip("-").replace("-", "_")
        if key not in OPTIONS:
            raise unknown_key(key)
        out[key] = value
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML or JSON mapping of keys to values."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read config file {str(path)!r}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"config file {str(path)!r} is not text (byte {err.start} is not UTF-8): give a YAML or JSON "
            "file of key: value"
        ) from None
    if path.suffix == ".json":
        try:
            loaded = json.loads(text)
        except ValueError as err:
            raise ConfigError(
                f"config file {str(path)!r} is not valid JSON: {err}; fix or replace it"
            ) from None
    else:
        import yaml

        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {err}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"config file {str(path)!r} must hold a mapping of key: value, not {type(loaded).__name__}"
        )
    return loaded


def describe_options() -> str:
    """The ``--help`` text listing every key with its default and allowed values."""
    lines = []
    for key, option in OPTIONS.items():
        lines.append(f"  {key:<24} default {option.default!r:<14} {option.help}; {option.allowed()}")
    lines.append("")
    lines.append("recipes: " + "; ".join(f"{n}: {json.dumps(r)}" for n, r in RECIPES.items()))
    return "\n".join(lines)
