"""Training data from several sources: labelled folders (labels.csv) beside UTKFace folders, each
indexed, reported and split on its own, on real images from ../shared."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agelab.bins import GROUPS10
from agelab.config import ConfigError, checked_config
from agelab.data import RACES, load_index
from agelab.data_sources import SourceError, load_data, load_sources, parse_sources
from agelab.data_sources import load_index as load_any_index
from agelab.labels_csv import LabelsError, read_labels
from agelab.training.errors import RunError
from agelab.training.splits import prepare_data
from tests.real_data import SHARED, copy_real_images, require

AAF_TRAIN = SHARED / "data" / "aaf-train"


def labelled_folder(
    folder: Path, rows: list[str], images: list[Path], header: str = "file,age_low,age_high,gender"
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for image in images:
        shutil.copy2(image, folder / image.name)
    (folder / "labels.csv").write_text("\n".join([header, *rows]) + "\n")
    return folder


@pytest.fixture(scope="module")
def aaf_train() -> Path:
    return require(
        AAF_TRAIN if (AAF_TRAIN / "labels.csv").is_file() else None, "All-Age-Faces training folder"
    )


@pytest.fixture
def faces(utkface_dir: Path, tmp_path: Path) -> list[Path]:
    """Eight real face images under neutral names (a labelled folder's names carry no labels)."""
    copied = copy_real_images(utkface_dir, tmp_path / "utk", 9, step=997)[1:]  # not the first image
    out = []
    for i, path in enumerate(copied):
        neutral = tmp_path / "faces" / f"face{i}.jpg"
        neutral.parent.mkdir(exist_ok=True)
        shutil.copy2(path, neutral)
        out.append(neutral)
    return out


def test_a_labelled_folder_reports_each_bad_row_and_keeps_the_rest(faces, tmp_path, isolated_dirs):
    folder = labelled_folder(
        tmp_path / "mine",
        [
            "face0.jpg,30,30,female",
            "face1.jpg,20,29,male",  # a range
            "face2.jpg,40,40,robot",  # unknown gender
            "face3.jpg,150,150,male",  # age out of range
            "face4.jpg,50,40,female",  # low above high
            "face0.jpg,31,31,female",  # listed twice
            "ghost.jpg,25,25,male",  # no such file
            "face5.jpg,abc,20,male",  # not a number
        ],
        faces[:7],
    )
    index = load_any_index(folder)
    assert sorted(index.frame["file"]) == ["face0.jpg", "face1.jpg"]
    reasons = dict(zip(index.malformed["file"], index.malformed["reason"]))
    assert "'robot' is not female or male" in reasons["face2.jpg"]
    assert "outside 0-116" in reasons["face3.jpg"]
    assert "age_low is above age_high" in reasons["face4.jpg"]
    assert "not found in" in reasons["ghost.jpg"]
    assert "'abc' is not an age" in reasons["face5.jpg"]
    assert reasons["face6.jpg"] == "an image that labels.csv does not list"
    assert any("listed more than once" in r for r in index.malformed["reason"])
    ranged = index.frame.set_index("file").loc["face1.jpg"]
    assert (ranged["age_low"], ranged["age_high"], ranged["age"]) == (20, 29, 24.5)
    assert (index.frame["race"] == -1).all() and RACES[-1] == "Unknown"
    # Read again: from the cache, the same.
    again = load_any_index(folder)
    assert again.cached and again.frame.equals(index.frame)


def test_bad_csvs_are_refused_at_launch_in_one_sentence(faces, tmp_path, isolated_dirs):
    no_gender = labelled_folder(
        tmp_path / "a", ["face0.jpg,30,30"], faces[:1], header="file,age_low,age_high"
    )
    with pytest.raises(ConfigError, match=r"missing column\(s\) gender"):
        checked_config({"data": str(no_gender)})
    with pytest.raises(ConfigError, match="that is a file"):
        checked_config({"data": str(faces[0])})
    good = labelled_folder(tmp_path / "b", ["face0.jpg,30,30,female"], faces[:1])
    with pytest.raises(ConfigError, match="gives 1 weight"):
        checked_config({"data": f"{good},{good}", "source_weights": "1"})
    with pytest.raises(LabelsError, match=r"row 2: gender='x'"):
        read_labels(labelled_folder(tmp_path / "c", ["face0.jpg,30,30,x"], faces[:1]) / "labels.csv")
    config = checked_config({"data": f"{good}, {tmp_path / 'utk'}", "source_weights": "1, 2.5"})
    assert config["data"] == f"{good.resolve()},{(tmp_path / 'utk').resolve()}"


def test_a_run_whose_every_row_is_bad_names_the_first_bad_row(faces, tmp_path, isolated_dirs):
    folder = labelled_folder(tmp_path / "bad", ["face0.jpg,30,39,woman?", "face1.jpg,20,29,robot"], faces[:2])
    config = {"data": str(folder), "source_weights": ""}
    with pytest.raises(RunError, match=r"2 file\(s\) left out; the first: face0.jpg: gender='woman\?'"):
        prepare_data(config, GROUPS10, lambda _: None)


def test_ethnicity_names_and_codes_map_to_utkface_groups(faces, tmp_path, isolated_dirs):
    folder = labelled_folder(
        tmp_path / "eth",
        [
            "face0.jpg,30,30,female,East Asian",
            "face1.jpg,30,30,male,3",
            "face2.jpg,30,30,male,",
            "face3.jpg,3,3,m,Black",
        ],
        faces[:4],
        header="file,age_low,age_high,gender,ethnicity",
    )
    frame = load_any_index(folder).frame.set_index("file")
    assert frame["race"].to_dict() == {"face0.jpg": 2, "face1.jpg": 3, "face2.jpg": -1, "face3.jpg": 1}


def test_sources_mix_with_their_own_splits_and_a_shared_photo_is_kept_once(
    utkface_dir, faces, tmp_path, isolated_dirs
):
    utk = tmp_path / "utk60"  # every 311th image: none of the faces (every 997th after the first)
    copy_real_images(utkface_dir, utk, 60, step=311)
    shared_photo = sorted(utk.iterdir())[5]  # not among the faces (every 997th image)
    clash_photo = sorted(utk.iterdir())[6]
    age = int(shared_photo.name.split("_")[0])
    gender = "female" if shared_photo.name.split("_")[1] == "1" else "male"
    shutil.copy2(shared_photo, faces[0].parent / "same.jpg")
    shutil.copy2(clash_photo, faces[0].parent / "clash.jpg")
    rows = [f"face{i}.jpg,{20 + i},{20 + i},female" for i in range(8)]
    rows += [f"same.jpg,{age},{age},{gender}", "clash.jpg,99,99,female"]
    mine = labelled_folder(
        tmp_path / "mine", rows, [*faces, faces[0].parent / "same.jpg", faces[0].parent / "clash.jpg"]
    )
    frame, reports = load_sources(parse_sources(f"{utk},{mine}", "1,3"))
    utk_split = load_index(utk)
    assert set(frame["source"]) == {"utk60", "mine"}
    # The photo in both sources is kept once, in UTKFace's row and split.
    same_md5 = frame.loc[frame["file"] == shared_photo.name, "md5"].item()
    assert (frame["md5"] == same_md5).sum() == 1
    # The photo whose labels disagree between the sources is dropped from both.
    assert clash_photo.name not in set(frame["file"]) and "clash.jpg" not in set(frame["file"])
    summary = {r.source.name: r.summary() for r in reports}
    assert (
        summary["mine"]["shared_with_earlier_source"] == 2
        and summary["mine"]["conflicting_across_sources"] == 1
    )
    assert summary["mine"]["weight"] == 3 and summary["utk60"]["kind"] == "utkface"
    # Each source's split is saved and kept: read again, every face keeps its split.
    again = load_data(f"{utk},{mine}", "1,3")
    assert again.set_index("md5")["split"].equals(frame.set_index("md5")["split"])
    assert len(utk_split.frame) == 60


def test_source_weights_scale_each_face_in_the_loss(aaf_train, utkface_dir, isolated_dirs):
    config = {
        "data": f"{utkface_dir},{aaf_train}",
        "source_weights": "1,2",
        "max_images": 400,
        "seed": 0,
        "exclude": "",
        "crop": "none",
        "rebalance": "class_weights",
        "rebalance_by_race": True,
        "rebalance_power": 1.0,
    }
    data = prepare_data(config, GROUPS10, lambda _: None)
    train = data.train
    assert {utkface_dir.name, "aaf-train"} == set(train["source"])
    # Unknown ethnicity is a rebalancing group of its own, and the source weight multiplies the class weight.
    expected = train["weight"].to_numpy() * np.where(train["source"] == "aaf-train", 2.0, 1.0)
    assert np.allclose(data.weights, expected)
    assert (train.loc[train["source"] == "aaf-train", "race"] == -1).all()
    assert not data.ranges


def test_real_all_age_faces_index_reports_its_byte_identical_groups(aaf_train, isolated_dirs):
    index = load_any_index(aaf_train)
    summary = index.summary()
    assert summary["total"] == summary["valid"] == 9413 and summary["malformed"] == 0
    assert summary["duplicate_groups"] == 106
    # Groups whose two names carry different ages are dropped whole; the rest keep one copy.
    assert summary["kept"] == 9413 - index.frame["dup_group"].ge(0).sum() + (
        106 - summary["conflicting_groups"]
    )


def test_a_data_value_that_names_nothing_is_refused():
    with pytest.raises(SourceError, match="not a positive number"):
        parse_sources("a,b", "1,-2")
    assert [s.name for s in parse_sources("x/data,y/data")] == ["data", "y/data"]
    assert pd.api.types.is_string_dtype(pd.Series([s.name for s in parse_sources("")]))
