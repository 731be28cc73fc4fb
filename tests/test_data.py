import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from agelab.bins import GROUPS10
from agelab.data import MalformedName, dedupe, load_index, parse_name
from agelab.paths import PROJECT_ROOT
from agelab.rebalance import rebalance
from agelab.saved_split import load_dataset, load_split, make_split, stratum

MALFORMED = {
    "39_1_20170116174525125.jpg.chip.jpg": "race field missing",
    "61_1_20170109142408075.jpg.chip.jpg": "race field missing",
    "61_1_20170109150557335.jpg.chip.jpg": "race field missing",
    "61_3_20170109150557335.jpg.chip.jpg": "gender '3'",
    "24_0_1_20170116220224657 .jpg.chip.jpg": "contains a space",
    "55_0_0_20170116232725357jpg.chip.jpg": "missing '.'",
    "14_0_0_2017011022340900.jpg.chip.jpg": "16 digits",
    "28_1_2_201701161846515488.jpg.chip.jpg": "18 digits",
    "38_0_1_201701162330572788.jpg.chip.jpg": "18 digits",
}


@pytest.fixture(scope="module")
def index(utkface_dir, tmp_path_factory):
    import os

    os.environ["AGELAB_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield load_index(utkface_dir)
    del os.environ["AGELAB_CACHE_DIR"]


def test_parse_name_reads_labels():
    labels = parse_name("26_1_3_20170119180021372.jpg.chip.jpg")
    assert (labels.age, labels.gender, labels.race) == (26, 1, 3)


@pytest.mark.parametrize("name, reason", MALFORMED.items())
def test_each_malformed_name_has_its_reason(name, reason):
    with pytest.raises(MalformedName, match=reason):
        parse_name(name)


def test_age_outside_range_is_malformed():
    with pytest.raises(MalformedName, match="outside 1-116"):
        parse_name("117_0_0_20170119180021372.jpg.chip.jpg")
    with pytest.raises(MalformedName, match="outside 1-116"):
        parse_name("0_0_0_20170119180021372.jpg.chip.jpg")


def test_index_counts_on_the_real_folder(index):
    assert len(index.frame) + len(index.malformed) == 22162
    assert len(index.malformed) == 9
    assert dict(zip(index.malformed["file"], index.malformed["reason"])).keys() == MALFORMED.keys()
    assert index.frame["age"].between(1, 116).all()
    assert set(index.frame["gender"]) == {0, 1} and set(index.frame["race"]) == {0, 1, 2, 3, 4}
    # SOURCE.md counts 10,604 female names; 4 of them are malformed (race missing, 18-digit stamp).
    assert (index.frame["gender"] == 1).sum() == 10_604 - 4


def test_duplicates_match_the_published_list(index, duplicates_csv):
    published = pd.read_csv(duplicates_csv).groupby("group")["file"].apply(frozenset)
    found = index.duplicate_groups.groupby("dup_group")["file"].apply(frozenset)
    assert set(found) == set(published)
    conflict = index.duplicate_groups.set_index("file")["dup_conflict"]
    assert bool(conflict["23_1_3_20170119164425613.jpg.chip.jpg"])  # 23 vs 33 years old
    summary = index.summary()
    assert summary["duplicate_groups"] == 334 and summary["conflicting_groups"] == 231


def test_dedupe_drops_conflicts_and_keeps_one_agreeing_copy(index):
    kept = dedupe(index.frame)
    assert kept["md5"].is_unique
    assert not kept["dup_conflict"].any()
    agreeing = index.frame[(index.frame["dup_group"] >= 0) & ~index.frame["dup_conflict"]]
    assert set(agreeing["md5"]) <= set(kept["md5"])
    assert len(dedupe(index.frame, "none")) == len(index.frame)
    with pytest.raises(ValueError, match="drop_conflicts"):
        dedupe(index.frame, "keep_some")


def test_index_is_cached_and_rebuilt_when_the_folder_changes(utkface_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("AGELAB_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "imgs"
    folder.mkdir()
    names = sorted(p.name for p in utkface_dir.iterdir() if p.name.endswith(".chip.jpg"))[:30]
    for name in names:
        shutil.copy(utkface_dir / name, folder / name)
    first = load_index(folder)
    second = load_index(folder)
    assert (first.cached, second.cached) == (False, True)
    assert not any(p.suffix == ".parquet" for p in folder.iterdir())  # the image folder stays untouched
    (folder / names[0]).unlink()
    third = load_index(folder)
    assert not third.cached and len(third.frame) == len(first.frame) - 1


def test_split_is_deterministic_stratified_and_keeps_duplicates_together(index):
    split = make_split(index.frame, seed=0)
    assert split.equals(make_split(index.frame, seed=0))
    assert not split.equals(make_split(index.frame, seed=1))
    frame = index.frame.assign(split=index.frame["md5"].map(split))
    assert frame.groupby("md5")["split"].nunique().max() == 1
    shares = frame["split"].value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.70, abs=0.01) and shares["test"] == pytest.approx(
        0.15, abs=0.01
    )
    per_stratum = frame.groupby(stratum(frame))["split"].apply(lambda s: (s == "test").mean())
    big = frame.groupby(stratum(frame)).size() >= 100
    assert per_stratum[big].between(0.12, 0.18).all()


def test_saved_split_is_reused(index):
    assert load_split(index).equals(load_split(index))
    dataset = load_dataset(index.folder)
    assert set(dataset["split"]) == {"train", "val", "test"} and dataset["split"].notna().all()


def test_rebalancing_strategies(index):
    data = dedupe(index.frame)
    under = rebalance(data, "undersample", GROUPS10, target=500)
    assert under.groupby(GROUPS10.bin_of(under["age"])).size().max() == 500
    over = rebalance(data, "oversample", GROUPS10, target=1500, by_race=True)
    groups = over.groupby([GROUPS10.bin_of(over["age"]), over["race"]]).size()
    assert groups.min() >= 1500
    weighted = rebalance(data, "class_weights", GROUPS10)
    per_bin = weighted.groupby(GROUPS10.bin_of(weighted["age"]))["weight"].sum()
    assert per_bin.max() == pytest.approx(per_bin.min())  # every bin weighs the same
    # Half-way in log terms: each cell's total weight goes as the square root of its size.
    cells = [GROUPS10.bin_of(data["age"]), data["race"]]
    tempered = rebalance(data, "class_weights", GROUPS10, by_race=True, power=0.5)
    assert tempered["weight"].mean() == pytest.approx(1.0)
    per_cell = tempered.groupby(cells)["weight"].agg(["sum", "size"])
    ratio = per_cell["sum"] / np.sqrt(per_cell["size"])
    assert np.allclose(ratio, ratio.iloc[0])
    full = rebalance(data, "class_weights", GROUPS10, by_race=True)["weight"]
    assert tempered["weight"].max() < full.max() / 3 and tempered["weight"].min() > full.min()
    with pytest.raises(ValueError, match="power=1.5: must be between 0"):
        rebalance(data, "class_weights", GROUPS10, power=1.5)
    with pytest.raises(ValueError, match="allowed values are none, undersample"):
        rebalance(data, "smote", GROUPS10)


def test_index_cli_prints_one_json_line(utkface_dir, tmp_path):
    env = {"AGELAB_CACHE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "agelab", "index", "--data", str(utkface_dir)]
    runs = [subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=PROJECT_ROOT) for _ in range(2)]
    first, second = (json.loads(r.stdout.strip().splitlines()[-1]) for r in runs)
    assert first["total"] == 22162 and first["malformed"] == 9 and first["kept"] == 21581
    assert (first["cached"], second["cached"]) == (False, True)
    assert (
        second["seconds"] < first["seconds"]
    )  # reused, not rebuilt; absolute timings live in bench/index.py
    assert "malformed: 55_0_0_20170116232725357jpg.chip.jpg" in runs[0].stderr


def test_index_cli_names_a_missing_folder(tmp_path):
    missing = tmp_path / "nope"
    result = subprocess.run(
        [sys.executable, "-m", "agelab", "index", "--data", str(missing)], capture_output=True, text=True
    )
    assert result.returncode == 1 and str(missing) in result.stderr and "setup" in result.stderr
