"""The train config: defaults, overrides, recipes, files, and rejection of bad keys and values."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agelab.config import RECIPES, ConfigError, build_config, load_config_file, parse_overrides
from agelab.paths import PROJECT_ROOT


def test_overrides_are_typed_and_applied():
    config = build_config(
        parse_overrides(["epochs=3", "learning_rate=5e-4", "augment=no", "bins=0,3,13,20,40,60"])
    )
    assert config["epochs"] == 3 and isinstance(config["epochs"], int)
    assert config["learning_rate"] == pytest.approx(5e-4)
    assert config["augment"] is False
    assert config["bins"] == "0,3,13,20,40,60"
    assert config["alpha"] == 0.35  # mobilenet_v2's default width is filled in


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("epoch=3", ["unknown key 'epoch'", "Did you mean 'epochs'?"]),
        ("modle=baseline_cnn", ["unknown key 'modle'", "Did you mean 'model'?"]),
        (
            "model=mobilenetv2",
            ["model", "one of baseline_cnn, small_cnn, mobilenet_v2", "Did you mean 'mobilenet_v2'?"],
        ),
        ("rebalance=undersampel", ["rebalance", "undersample, oversample", "Did you mean 'undersample'?"]),
        ("epochs=three", ["epochs='three'", "an integer >= 1"]),
        ("epochs=0", ["epochs='0'", ">= 1"]),
        ("augment=maybe", ["augment='maybe'", "true or false"]),
        ("bins=0,10,5", ["bins", "strictly increasing"]),
        ("bins=tens", ["bins", "groups10, equal12, decades"]),
        ("recipe=defualt", ["recipe", "Did you mean 'default'?"]),
    ],
)
def test_bad_key_or_value_names_it_and_the_allowed_values(argument, expected):
    with pytest.raises(ConfigError) as caught:
        build_config(parse_overrides([argument]))
    for fragment in expected:
        assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (
            {"model": "baseline_cnn", "weights": "imagenet"},
            "baseline_cnn has no pretrained weights; use weights=none",
        ),
        (
            {"model": "baseline_cnn", "weights": "none", "fast": "true"},
            "fast mode caches a pretrained backbone",
        ),
        ({"image_size": "128"}, "use 112, 144 or 224"),
        ({"model": "mobilenet", "alpha": "0.35"}, "mobilenet takes alpha in 0.25"),
        ({"model": "vgg16", "alpha": "0.5"}, "only mobilenet and mobilenet_v2 take alpha"),
        ({"fast": "true", "weights": "none"}, "frozen random features"),
        ({"rebalance_power": "0.5"}, "rebalance='none' has none; use rebalance=class_weights"),
    ],
)
def test_conflicting_keys_are_rejected(overrides, fragment):
    with pytest.raises(ConfigError, match=fragment):
        build_config(overrides)


def test_nets_without_pretrained_weights_default_to_weights_none():
    assert build_config({"model": "baseline_cnn"})["weights"] == "none"
    assert build_config({"model": "small_cnn", "image_size": "144"})["weights"] == "none"
    assert build_config({"model": "resnet50"})["weights"] == "imagenet"


def test_recipe_sets_keys_and_explicit_keys_win():
    config = build_config({"recipe": "baseline", "epochs": "2"})
    assert config["model"] == RECIPES["baseline"]["model"] == "baseline_cnn"
    assert config["epochs"] == 2
    assert config["recipe"] == "baseline"


def test_a_config_saved_with_an_old_bin_scheme_name_loads_under_the_new_one(tmp_path: Path):
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps({"recipe": "baseline", "bins": "seed10", "epochs": 2}))
    config = build_config(base=load_config_file(saved))
    assert config["bins"] == "groups10"
    assert config == build_config({"recipe": "baseline", "epochs": "2"})


def test_train_help_lists_every_key_once_under_its_group():
    from agelab.config import OPTIONS, describe_options

    text = describe_options()
    headings = [line for line in text.splitlines() if line and not line.startswith(" ")]
    assert headings[:5] == [
        "data:",
        "model:",
        "training:",
        "augmentation:",
        "experimental (not in the shipped recipes):",
    ]
    listed = [line.split()[0] for line in text.splitlines() if line.startswith("  ")]
    assert sorted(listed) == sorted(OPTIONS) and len(listed) == len(set(listed))
    experimental = text.split("experimental (not in the shipped recipes):")[1]
    for key in ("soft_bins", "teacher", "mixup", "rebalance_power", "rebalance_by_race"):
        assert (
            f"  {key} " in experimental and "[not kept:" in experimental.split(f"  {key} ")[1].splitlines()[0]
        )


def test_errors_offer_the_new_names_only():
    with pytest.raises(ConfigError) as caught:
        build_config({"model": "cnn"})
    assert "baseline_cnn" in str(caught.value) and "seed_cnn" not in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        build_config({"recipe": "nope"})
    assert "baseline" in str(caught.value) and "seed" not in str(caught.value)


def test_saved_config_reproduces_itself(tmp_path: Path):
    config = build_config({"recipe": "default", "bins": "decades", "seed": "7", "max_images": "500"})
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps(config))
    assert build_config(base=load_config_file(saved)) == config


def test_yaml_file_with_overrides_on_top(tmp_path: Path):
    path = tmp_path / "run.yaml"
    path.write_text("model: small_cnn\nweights: none\nepochs: 4\nbins: equal12\n")
    config = build_config({"epochs": "6"}, base=load_config_file(path))
    assert (config["model"], config["epochs"], config["bins"]) == ("small_cnn", 6, "equal12")
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config_file(path)


def test_cli_rejects_a_bad_config_before_anything_starts(tmp_path: Path):
    runs_dir = tmp_path / "runs"
    result = subprocess.run(
        [sys.executable, "-m", "agelab", "train", "epohcs=3"],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env={"AGELAB_RUNS_DIR": str(runs_dir), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert result.returncode == 2
    assert "unknown key 'epohcs'" in result.stderr and "Did you mean 'epochs'?" in result.stderr
    assert not runs_dir.exists()  # no run folder was made
