"""The Train page's form, made from the config's own option table (:mod:`agelab.config_options`): one
section per group, one field per key with its widget, bounds and help, which fields apply given the
choices made above the form (model, age bins, rebalance, fine-tune depth), and the ``key=value``
overrides a launch sends. Nothing here imports Streamlit: the page only draws these fields.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agelab.bins import BUILTIN_SCHEMES
from agelab.config import ConfigError, build_config, coerce
from agelab.config_options import ALPHAS, EXPERIMENTAL_REASONS, GROUPS, OPTIONS, PRETRAINED_MODELS, Option

# Chosen above the form, because they decide which fields in it apply: a form's fields cannot be
# enabled or disabled until it is submitted. The age-bin scheme is chosen there too; the form's bins
# field holds the edges of a custom one.
ABOVE_FORM = ("recipe", "model", "rebalance", "fine_tune_layers")
# The age-bin choice above the form that makes the form's bins field (the edges) apply.
CUSTOM_BINS = "custom"
# What the edges field shows when the chosen scheme is a named one.
EXAMPLE_EDGES = "0,3,13,20,40,60"
# What the alpha field shows for "the model's own width" (alpha=0).
MODEL_DEFAULT_ALPHA = "model default"
# Where the page starts unlike the defaults when no recipe is picked: fast mode trains the heads on
# cached features, minutes on a CPU rather than hours.
PAGE_DEFAULTS: dict[str, Any] = {"fast": True}
# Labels where the key alone would not say it; any other key reads as its words (``aug_`` dropped in
# the augmentation section).
LABELS = {
    "data": "Dataset folder",
    "name": "Run name",
    "exclude": "Leave out marked faces (marks CSV)",
    "bins": "Custom bin edges",
    "max_images": "Max images (0: all)",
    "alpha": "Width (alpha)",
    "lr_schedule": "Learning-rate schedule",
    "fine_tune_epochs": "Fine-tune epochs",
    "fine_tune_learning_rate": "Fine-tune learning rate",
    "keep_checkpoints": "Checkpoints kept",
    "early_stopping": "Early stopping (epochs)",
    "loss_weight_age_bin": "Loss weight: age bin",
    "loss_weight_age": "Loss weight: age in years",
    "loss_weight_gender": "Loss weight: gender",
    "fast": "Fast mode",
    "mixed_precision": "Mixed precision",
    "num_gpus": "Ray GPUs reserved",
    "num_cpus": "Ray CPUs reserved",
    "gpus": "GPUs used",
    "gpu_memory_mb": "GPU memory limit (MB)",
    "aug_color": "White balance",
    "aug_blur": "Softening",
    "soft_bins": "Soft bins",
    "mixup": "Mixup (alpha)",
    "rebalance_power": "Balance strength",
    "rebalance_by_race": "Balance bin x ethnicity",
}
# A field that does not apply sends this value where it differs from the recipe's, so a setting the
# recipe made for another model (a MobileNet width, ImageNet weights) does not reach this one.
NOT_APPLIED: dict[str, Any] = {
    "alpha": 0.0,
    "weights": "none",
    "fast": False,
    "rebalance_power": 1.0,
    "rebalance_by_race": False,
}
# Each group's heading, and the groups whose section is open when the page opens.
TITLES = {
    "data": "Data",
    "model": "Model",
    "training": "Training",
    "augmentation": "Augmentation",
    "experimental": "Experimental (not in the shipped recipes)",
}
OPEN_GROUPS = ("data", "model", "training")
WIDGETS = {
    "choice": "selectbox",
    "alpha": "selectbox",
    "bool": "checkbox",
    "int": "number_input",
    "float": "number_input",
    "str": "text_input",
    "bins": "text_input",
}


@dataclass(frozen=True)
class Field:
    """One form field: the widget that shows a config key, its first value, and why it is off (if it is)."""

    key: str
    label: str
    widget: str  # "selectbox", "checkbox", "number_input" or "text_input"
    value: Any
    help: str
    options: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    number_format: str | None = None
    off_because: str = ""  # empty: the field applies

    @property
    def disabled(self) -> bool:
        return bool(self.off_because)


def label(key: str) -> str:
    """The field's label: ``LABELS``' words, else the key's (``aug_zoom`` -> ``Zoom``)."""
    if key in LABELS:
        return LABELS[key]
    return key.removeprefix("aug_").replace("_", " ").capitalize()


def off_because(key: str, choices: Mapping[str, Any]) -> str:
    """Why ``key`` does not apply given the choices above the form (``model``, ``bins``, ``rebalance``,
    ``fine_tune_layers``); empty when it does."""
    model = choices["model"]
    if key == "alpha" and model not in ALPHAS:
        return f"{model} has no width multiplier (MobileNets only)"
    if key in ("weights", "fast") and model not in PRETRAINED_MODELS:
        return f"{model} has no pretrained backbone"
    if key == "bins" and choices["bins"] != CUSTOM_BINS:
        return "used when Age bins is custom"
    if key == "rebalance_by_race" and choices["rebalance"] == "none":
        return "used when Rebalance is not none"
    if key == "rebalance_power" and choices["rebalance"] != "class_weights":
        return "used when Rebalance is class_weights"
    if key in ("fine_tune_epochs", "fine_tune_learning_rate") and not choices["fine_tune_layers"]:
        return "used when Fine-tune depth is above 0"
    return ""


def _number_style(option: Option) -> tuple[float | None, str | None]:
    """A float field's step and display: a learning rate moves by a tenth of its size, shown in full."""
    if option.kind != "float":
        return None, None
    if 0 < option.default < 0.01:
        return 10.0 ** (math.floor(math.log10(option.default)) - 1), "%g"
    return (0.01 if (option.maximum or math.inf) <= 1 else 0.1), "%.2f"


def _field(key: str, value: Any, choices: Mapping[str, Any]) -> Field:
    option = OPTIONS[key]
    why_off = off_because(key, choices)
    help_ = option.help + (f". Not kept: {EXPERIMENTAL_REASONS[key]}" if key in EXPERIMENTAL_REASONS else "")
    if why_off:
        help_ += f" ({why_off})"
    widget = WIDGETS[option.kind]
    options: tuple[Any, ...] = ()
    if option.kind == "choice":
        options = tuple(option.choices)
    elif option.kind == "alpha":
        options = (MODEL_DEFAULT_ALPHA, *ALPHAS.get(choices["model"], ()))
        value = value if value in options else MODEL_DEFAULT_ALPHA
    elif option.kind == "bins":
        value = EXAMPLE_EDGES if value in BUILTIN_SCHEMES else value
    elif option.kind == "int":
        value = int(value)
    elif option.kind == "float":
        value = float(value)
    step, number_format = _number_style(option)
    minimum, maximum = option.minimum, option.maximum
    if option.kind == "float":
        minimum, maximum = (None if b is None else float(b) for b in (minimum, maximum))
    elif option.kind == "int":
        minimum, maximum = (None if b is None else int(b) for b in (minimum, maximum))
    return Field(
        key, label(key), widget, value, help_, options, minimum, maximum, step, number_format, why_off
    )


def first_values(recipe: str, start: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the form shows first: the recipe's config (the defaults when none, with the page's own
    ``PAGE_DEFAULTS``), then ``start`` (e.g. the dataset folder the page remembers)."""
    values = build_config({"recipe": recipe})
    if recipe == "none":
        values.update(PAGE_DEFAULTS)
    values.update(start or {})
    return values


def sections(
    recipe: str, choices: Mapping[str, Any], start: Mapping[str, Any] | None = None
) -> dict[str, list[Field]]:
    """Each group's fields in the option table's order, less the keys chosen above the form."""
    values = first_values(recipe, start)
    return {
        group: [_field(key, values[key], choices) for key in keys if key not in ABOVE_FORM]
        for group, keys in GROUPS.items()
    }


def _same(key: str, value: Any, base: Mapping[str, Any]) -> bool:
    try:
        return coerce(key, value) == base[key]
    except ConfigError:
        return False  # a bad value is sent, so that the launch names it


def overrides(recipe: str, choices: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """The ``key=value`` overrides a launch sends: the recipe, then every choice above the form
    (``choices``) and field in it (``values``) whose value differs from the recipe's (the defaults'
    when none). A field that does not apply sends its ``NOT_APPLIED`` value, or nothing."""
    base = build_config({"recipe": recipe})
    wanted = {key: value for key, value in choices.items() if key in ABOVE_FORM and key != "recipe"}
    wanted["bins"] = values.get("bins") if choices["bins"] == CUSTOM_BINS else choices["bins"]
    for key, value in values.items():
        if key in ABOVE_FORM or key == "bins":
            continue
        if off_because(key, choices):
            if key not in NOT_APPLIED:
                continue
            value = NOT_APPLIED[key]
        wanted[key] = 0.0 if key == "alpha" and value == MODEL_DEFAULT_ALPHA else value
    return {"recipe": recipe, **{key: v for key, v in wanted.items() if not _same(key, v, base)}}
