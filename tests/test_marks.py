"""Marks ("label looks wrong"): kept beside the dataset index, exported, and honoured by ``train``."""

from __future__ import annotations

import pandas as pd
import pytest

from agelab import marks
from agelab.config import ConfigError, build_config
from agelab.data import index_cache_dir
from tests.real_data import copy_real_images


def test_marks_live_beside_the_index_and_round_trip(isolated_dirs, utkface_dir):
    images = copy_real_images(utkface_dir, isolated_dirs / "utk", 3, step=997)
    folder = images[0].parent
    assert marks.marks_path(folder).parent == index_cache_dir(folder)
    assert not marks.marks_path(folder).parent.is_relative_to(folder)  # never in the image folder
    assert marks.load_marks(folder).empty

    marks.set_mark(folder, images[0])
    table = marks.set_mark(folder, images[1].name)
    marks.set_mark(folder, images[1])  # twice: one row
    assert marks.marked_files(folder) == {images[0].name, images[1].name}
    age, gender, race = (int(x) for x in images[0].name.split("_")[:3])
    row = marks.load_marks(folder).set_index("file").loc[images[0].name]
    assert (row["age"], row["gender"], row["race"], row["reason"]) == (age, gender, race, "label looks wrong")
    assert len(table) == 2

    marks.set_mark(folder, images[0], marked=False)
    assert marks.marked_files(folder) == {images[1].name}
    exported = isolated_dirs / "exported.csv"
    exported.write_bytes(marks.export_csv(marks.load_marks(folder)))
    assert marks.excluded_files(exported) == {images[1].name}


def test_exclude_key_is_validated(isolated_dirs):
    assert build_config()["exclude"] == ""
    with pytest.raises(ConfigError, match="bad value exclude='nowhere.csv'.*no marks file"):
        build_config({"exclude": "nowhere.csv"})
    bad = isolated_dirs / "bad.csv"
    bad.write_text("name,age\nx,1\n")
    with pytest.raises(ConfigError, match="no 'file' column"):
        build_config({"exclude": str(bad)})
    good = isolated_dirs / "good.csv"
    good.write_bytes(marks.export_csv(pd.DataFrame({"file": ["1_0_0_20170109150557335.jpg.chip.jpg"]})))
    assert build_config({"exclude": str(good)})["exclude"] == str(good)


def test_train_leaves_the_marked_files_out(isolated_dirs, utkface_dir, capsys):
    from agelab.training.verb import train

    images = copy_real_images(utkface_dir, isolated_dirs / "utk", 120, step=157)
    folder = images[0].parent
    marked = [images[i] for i in range(0, 120, 10)]
    for image in marked:
        marks.set_mark(folder, image)
    run_dir = train(
        {
            "model": "small_cnn",
            "image_size": 32,
            "epochs": 1,
            "augment": False,
            "crop": "none",
            "data": str(folder),
            "exclude": str(marks.marks_path(folder)),
        }
    )
    metrics = pd.read_json(run_dir / "metrics.json", typ="series")
    assert metrics["n_excluded"] == len(marked)
    assert metrics["n_images"] == 120 - len(marked)
    tested = set(pd.read_parquet(run_dir / "predictions.parquet")["path"].map(lambda p: p.rsplit("/", 1)[-1]))
    assert tested and not tested & {p.name for p in marked}
    assert f"{len(marked)} marked images left out" in capsys.readouterr().out
