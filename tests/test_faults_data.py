"""Bad data and bad cache files met before a run starts: a saved split that empties a split, an index
cache of another layout, a file name that is not UTF-8, a folder of empty files, a seed beyond what
NumPy takes and a binary ``--config``. Each ends in one sentence naming the file or key, or heals."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from agelab import atomic
from agelab.commands import index as index_verb
from agelab.commands import train as train_command
from agelab.config import ConfigError, build_config, load_config_file
from agelab.data import index_cache_dir, load_index
from agelab.saved_split import load_split, make_split
from tests.real_data import copy_real_images

# The reasons the index gives, spelled out: they are what a user reads.
EMPTY_FILE = "empty file (0 bytes)"
NOT_UTF8_NAME = "name is not valid UTF-8; rename it"


@pytest.fixture
def small_folder(utkface_dir: Path, tmp_path: Path) -> Path:
    """60 real UTKFace images, enough for every split to get some."""
    return copy_real_images(utkface_dir, tmp_path / "utk", 60, step=300)[0].parent


def test_a_saved_split_with_every_image_in_train_is_made_again(small_folder, isolated_dirs, capsys):
    index = load_index(small_folder)
    path = index_cache_dir(small_folder) / "split-seed0.parquet"
    load_split(index)
    everything_in_train = pd.DataFrame({"md5": index.frame["md5"].unique(), "split": "train"})
    atomic.write_parquet(path, everything_in_train)
    capsys.readouterr()

    split = load_split(index)
    assert set(split) == {"train", "val", "test"}
    assert split.sort_index().equals(make_split(index.frame, 0).sort_index())
    note = capsys.readouterr().err
    assert str(path) in note and "val and test empty" in note and len(note.strip().splitlines()) == 1
    # The remade split is saved: the next run trusts it without a word.
    assert set(pd.read_parquet(path)["split"]) == {"train", "val", "test"}
    load_split(index)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "other",
    [
        pd.DataFrame({"image": ["a.jpg"], "label": [3]}),  # another program's table
        "ages as text",  # the right columns, a wrong kind
    ],
    ids=["other columns", "other dtypes"],
)
def test_an_index_cache_of_another_layout_is_rebuilt(small_folder, isolated_dirs, other):
    built = load_index(small_folder)
    cache = index_cache_dir(small_folder) / "index.parquet"
    if isinstance(other, str):
        other = built.frame.assign(age=built.frame["age"].astype(str))
    atomic.write_parquet(cache, other)

    healed = load_index(small_folder)
    assert not healed.cached and healed.frame.equals(built.frame)
    assert healed.frame["age"].dtype == "int64"
    # The rebuilt cache fits, so it is read from then on.
    assert load_index(small_folder).cached


def test_a_name_that_is_not_utf8_is_left_out_saying_rename_it(small_folder, isolated_dirs, capsys):
    first = sorted(small_folder.iterdir())[0]
    badly_named = os.fsdecode(bytes(small_folder) + b"/face\xff.jpg")
    shutil.copy2(first, badly_named)

    assert index_verb.cli(["--data", str(small_folder)]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert f"face\\xff.jpg: {NOT_UTF8_NAME}" in captured.err
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["valid"] == 60 and summary["malformed"] == 1
    # From its cache too.
    assert index_verb.cli(["--data", str(small_folder)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["cached"] is True


def test_thirty_empty_files_are_named_as_empty(utkface_dir, isolated_dirs, tmp_path, capsys):
    folder = tmp_path / "empties"
    for copied in copy_real_images(utkface_dir, folder, 30, step=500):
        copied.write_bytes(b"")

    index = load_index(folder)
    assert index.frame.empty and list(index.malformed["reason"]) == [EMPTY_FILE] * 30
    assert (index.malformed["dup_group"] == -1).all()  # not one big group of identical empty files
    assert index_verb.cli(["--data", str(folder)]) == 0
    err = capsys.readouterr().err
    assert "30 image files, all empty (0 bytes)" in err and "no well-named" not in err


def test_an_empty_file_among_good_ones_is_left_out(small_folder, isolated_dirs):
    emptied = sorted(small_folder.iterdir())[5]
    emptied.write_bytes(b"")
    index = load_index(small_folder)
    assert len(index.frame) == 59 and emptied.name not in set(index.frame["file"])
    assert index.malformed.set_index("file").loc[emptied.name, "reason"] == EMPTY_FILE


def test_a_seed_beyond_numpy_is_refused_in_one_line(small_folder, isolated_dirs, capsys):
    assert build_config({"seed": 2**32 - 1})["seed"] == 2**32 - 1
    code = train_command.cli([f"data={small_folder}", "model=small_cnn", "seed=1e20"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "seed=" in err and "<= 4294967295" in err and "Traceback" not in err
    assert not (isolated_dirs / "runs").exists() or not any((isolated_dirs / "runs").iterdir())


def test_a_binary_config_file_is_named(small_folder, isolated_dirs, tmp_path, capsys):
    binary = tmp_path / "run.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ConfigError, match="run.yaml.*not text"):
        load_config_file(binary)
    assert train_command.cli(["--config", str(binary)]) == 2
    err = capsys.readouterr().err
    assert str(binary) in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
