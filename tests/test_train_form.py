"""The Train page's form made from the option table: sections, widgets, which fields apply, and the
overrides a launch sends (agelab.train_form)."""

from __future__ import annotations

import pytest

from agelab import train_form
from agelab.config import RECIPES, ConfigError, build_config
from agelab.config_options import GROUPS, OPTIONS

DEFAULT_CHOICES = {"model": "mobilenet_v2", "bins": "groups10", "rebalance": "none", "fine_tune_layers": 0}


def shown(recipe: str, choices: dict) -> dict:
    """What the untouched form would hand back: each field's first value."""
    return {f.key: f.value for fields in train_form.sections(recipe, choices).values() for f in fields}


def test_one_section_per_group_with_each_key_once_and_its_widget():
    sections = train_form.sections("none", DEFAULT_CHOICES)
    assert list(sections) == list(GROUPS) and set(train_form.TITLES) == set(GROUPS)
    keys = [f.key for fields in sections.values() for f in fields]
    assert sorted(keys) == sorted(k for k in OPTIONS if k not in train_form.ABOVE_FORM)
    fields = {f.key: f for group in sections.values() for f in group}
    assert fields["crop"].widget == "selectbox" and fields["crop"].options == OPTIONS["crop"].choices
    assert fields["augment"].widget == "checkbox"
    assert fields["epochs"].widget == "number_input" and (
        fields["epochs"].minimum,
        fields["epochs"].maximum,
    ) == (1, 1000)
    assert fields["dropout"].maximum == 0.9 and isinstance(fields["dropout"].value, float)
    assert fields["teacher"].widget == "text_input" and fields["bins"].widget == "text_input"
    assert fields["alpha"].options == ("model default", 0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
    assert fields["epochs"].help == OPTIONS["epochs"].help
    # An experiment says why it is not in the shipped recipes.
    assert "Not kept: " in fields["mixup"].help and fields["mixup"].label == "Mixup (alpha)"
    assert fields["aug_zoom"].label == "Zoom" and fields["image_size"].label == "Image size"
    # A learning rate moves by a tenth of its size; a fraction by a hundredth.
    assert fields["learning_rate"].step == pytest.approx(1e-4) and fields["dropout"].step == 0.01


def test_fields_apply_only_with_the_choices_that_use_them():
    plain = {"model": "small_cnn", "bins": "groups10", "rebalance": "none", "fine_tune_layers": 0}
    off = {f.key for fields in train_form.sections("none", plain).values() for f in fields if f.disabled}
    assert off == {"alpha", "weights", "fast", "bins", "rebalance_by_race", "rebalance_power",
                   "fine_tune_epochs", "fine_tune_learning_rate"}  # fmt: skip
    every = {"model": "mobilenet", "bins": "custom", "rebalance": "class_weights", "fine_tune_layers": 20}
    assert not [f for fields in train_form.sections("none", every).values() for f in fields if f.disabled]
    assert train_form.off_because("rebalance_by_race", {**every, "rebalance": "oversample"}) == ""
    assert train_form.off_because("rebalance_power", {**every, "rebalance": "oversample"}) == (
        "used when Rebalance is class_weights"
    )


@pytest.mark.parametrize("recipe", ["none", *RECIPES])
def test_the_untouched_form_runs_what_it_shows(recipe):
    base = train_form.first_values(recipe)
    choices = {key: base[key] for key in ("model", "bins", "rebalance", "fine_tune_layers")}
    values = shown(recipe, choices)
    sent = train_form.overrides(recipe, choices, values)
    config = build_config(sent)
    for key, value in values.items():
        if train_form.off_because(key, choices) or key == "bins":
            continue
        assert config[key] == (0.35 if value == "model default" else value), key
    # Only what differs from the recipe is sent: the page's own default (fast mode), nothing else.
    expected = {"recipe": recipe, **({"fast": True} if recipe == "none" else {})}
    assert sent == expected


def test_changed_fields_are_sent_and_fields_that_do_not_apply_are_neutral():
    choices = {**DEFAULT_CHOICES, "model": "small_cnn"}
    values = {**shown("quick", choices), "epochs": 3, "mixup": 0.3, "data": "/photos"}
    sent = train_form.overrides("quick", choices, values)
    # The quick recipe's width and fast mode belong to its MobileNet: turned off for small_cnn.
    assert sent == {"recipe": "quick", "model": "small_cnn", "epochs": 3, "mixup": 0.3, "data": "/photos",
                    "alpha": 0.0, "fast": False, "weights": "none"}  # fmt: skip
    config = build_config(sent)
    assert (config["model"], config["alpha"], config["fast"], config["epochs"]) == (
        "small_cnn",
        0.0,
        False,
        3,
    )


def test_custom_bins_send_the_edges_and_a_bad_value_reaches_the_config_check():
    choices = {**DEFAULT_CHOICES, "bins": "custom"}
    values = shown("none", choices)
    assert values["bins"] == train_form.EXAMPLE_EDGES
    assert train_form.overrides("none", choices, values)["bins"] == "0,3,13,20,40,60"
    sent = train_form.overrides("none", {**DEFAULT_CHOICES, "bins": "decades"}, values)
    assert sent["bins"] == "decades"  # a named scheme: the edges field does not apply
    bad = train_form.overrides("none", choices, {**values, "bins": "3,1"})
    with pytest.raises(ConfigError, match="bins="):
        build_config(bad)
