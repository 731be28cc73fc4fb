"""Marks ("label looks wrong"): kept beside the dataset index, exported, and honoured by ``train``."""

from __future__ import annotations

import json

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
    metrics = json.loads((run_dir / "metrics.json").read_text())
    tested = set(pd.read_parquet(run_dir / "predictions.parquet")["path"].map(lambda p: p.rsplit("/", 1)[-1]))
    # Marked test images stay in the test split, as disputed; the others leave training and validation.
    disputed = tested & {p.name for p in marked}
    assert metrics["n_excluded"] == len(marked) - len(disputed)
    assert metrics["n_images"] == 120 - metrics["n_excluded"]
    if disputed:
        assert metrics["disputed"]["n"] == len(disputed)
        assert metrics["disputed"]["without_them"]["n_test"] == metrics["n_test"] - len(disputed)
    assert (
        f"{metrics['n_excluded']} marked images left out of training and validation"
        in capsys.readouterr().out
    )


def test_marks_leave_training_and_validation_and_the_test_split_never_changes(utkface_dir, isolated_dirs):
    from agelab.bins import GROUPS10
    from agelab.training.splits import prepare_data
    from tests.real_data import copy_real_images

    folder = isolated_dirs / "utk"
    copy_real_images(utkface_dir, folder, 120, step=150)
    config = {"data": str(folder), "max_images": 0, "seed": 0, "crop": "none", "rebalance": "none",
              "rebalance_by_race": False, "rebalance_power": 1.0, "exclude": ""}  # fmt: skip
    before = prepare_data(config, GROUPS10, lambda _: None)
    train, test = before.splits["train"]["file"], before.splits["test"]["file"]
    marks = isolated_dirs / "marks.csv"
    marks.write_text("file,reason\n" + "\n".join(f"{f},age wrong" for f in [*train[:3], test.iloc[0]]) + "\n")
    after = prepare_data({**config, "exclude": str(marks)}, GROUPS10, lambda _: None)
    assert len(after.splits["train"]) == len(before.splits["train"]) - 3
    assert after.splits["test"]["file"].tolist() == test.tolist()  # the same test split, file for file
    assert after.disputed == {before.splits["test"]["path"].iloc[0]} and after.n_excluded == 3


def test_evaluate_scores_with_and_without_the_disputed_test_labels(utkface_dir, isolated_dirs):
    import json
    import os
    import subprocess
    import sys

    from agelab.marks import marks_path
    from agelab.paths import PROJECT_ROOT
    from tests.predict_helpers import save_contract_model
    from tests.real_data import copy_real_images

    folder = isolated_dirs / "test-images"
    images = copy_real_images(utkface_dir, folder, 12, step=700)
    marks = marks_path(folder)
    marks.parent.mkdir(parents=True, exist_ok=True)
    marks.write_text(f"file,reason\n{images[0].name},age wrong\n{images[1].name},gender wrong\n")
    model = save_contract_model(isolated_dirs / "model")
    result = subprocess.run(
        [sys.executable, "-m", "agelab", "evaluate", "--model", str(model), "--data", str(folder), "--no-detect"],
        capture_output=True, text=True, cwd=PROJECT_ROOT, env=dict(os.environ), timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["n"] == 12 and summary["disputed"]["n"] == 2
    assert summary["disputed"]["without_them"]["n"] == 10
