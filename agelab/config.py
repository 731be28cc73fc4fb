"""Training configuration: the defaults, named recipes, ``key=value`` overrides and validation.

A config is a flat dict of plain JSON values; its keys, defaults and groups are the option table of
:mod:`agelab.config_options`. Every run saves its fully resolved config, and
``python -m agelab train --config runs/<run>/config.json`` repeats that run exactly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from agelab.bins import get_scheme
from agelab.config_options import (  # noqa: F401  (the option table's names, read through here by pages and tests)
    ALPHAS,
    DEFAULT_ALPHA,
    DOWNLOADING_SIZES,
    MAX_NAME,
    MAX_SEED,
    MIN_IMAGES,
    MODELS,
    OPTIONS,
    PRETRAINED_MODELS,
    REBALANCE,
    WEIGHTS,
    Option,
    options_help,
    suggest,
)


class ConfigError(ValueError):
    """A config that cannot run. The message names the key and what it accepts."""


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


def default_config() -> dict[str, Any]:
    return {key: option.default for key, option in OPTIONS.items()}


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
    """The ``--help`` text: every key under its group's heading, then the named recipes."""
    return options_help(RECIPES)
