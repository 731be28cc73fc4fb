"""Age ranges as labels: the losses, and a real run on a labelled folder of real faces with ranges."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from agelab.bins import GROUPS10
from agelab.paths import PROJECT_ROOT
from agelab.training.intervals import (
    BinSetCrossentropy,
    IntervalAbsoluteError,
    interval_labels,
    overlap_mask,
)
from tests.real_data import copy_real_images


def test_a_range_covers_every_bin_it_overlaps():
    mask = overlap_mask(np.array([20.0, 30.0, 3.0]), np.array([29.0, 30.0, 3.0]), GROUPS10)
    bins = GROUPS10.bin_of(np.arange(20, 30))
    assert mask[0].nonzero()[0].tolist() == sorted(set(bins.tolist()))
    assert mask[1].sum() == mask[2].sum() == 1


def test_interval_losses_reduce_to_the_usual_ones_for_exact_ages():
    import keras

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(GROUPS10.num_bins), size=6).astype("float32")
    frame = pd.DataFrame(
        {
            "age_low": [5, 20, 33, 61, 20, 40],
            "age_high": [5, 20, 33, 61, 29, 60],
            "gender": [0, 1, 0, 1, 1, 0],
        }
    )
    labels = interval_labels(frame, GROUPS10)
    set_loss = keras.ops.convert_to_numpy(BinSetCrossentropy(reduction=None)(labels["age_bin"], probs))
    exact = GROUPS10.bin_of(frame["age_low"].to_numpy()[:4])
    expected = -np.log(probs[np.arange(4), exact])
    assert np.allclose(set_loss[:4], expected, atol=1e-5)
    # A range is as likely as the sum of its bins: lower loss than any one of them alone.
    assert set_loss[4] < -np.log(probs[4, GROUPS10.bin_of(np.array([25]))[0]])
    years = np.array([[5.0], [25.0], [30.0], [70.0], [24.0], [35.0]], dtype="float32")
    age_loss = keras.ops.convert_to_numpy(IntervalAbsoluteError(reduction=None)(labels["age"], years))
    assert np.allclose(age_loss, [0, 5, 3, 9, 0, 5])


def test_a_run_on_age_ranges_trains_and_loads_in_a_fresh_process(utkface_dir, tmp_path, isolated_dirs):
    folder = tmp_path / "ranged"
    copied = copy_real_images(utkface_dir, tmp_path / "utk", 120, step=150)
    folder.mkdir()
    rows = []
    for i, path in enumerate(copied):
        age, gender = int(path.name.split("_")[0]), int(path.name.split("_")[1])
        shutil.copy2(path, folder / f"p{i}.jpg")
        low = (age // 10) * 10 if i % 2 else age  # half of them given as a decade, FairFace's way
        high = low + 9 if i % 2 else age
        rows.append(f"p{i}.jpg,{low},{high},{'female' if gender else 'male'}")
    (folder / "labels.csv").write_text("file,age_low,age_high,gender\n" + "\n".join(rows) + "\n")
    result = subprocess.run(
        [
            sys.executable, "-m", "agelab", "train", f"data={folder}", "name=ranged", "model=small_cnn",
            "weights=none", "image_size=64", "epochs=2", "batch_size=32", "crop=none",
        ],
        capture_output=True, text=True, cwd=PROJECT_ROOT, env=dict(os.environ), timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    log = (run_dir / "log.txt").read_text()
    assert "faces train on interval targets" in log
    history = pd.read_csv(run_dir / "history.csv")
    assert np.isfinite(history["loss"]).all() and (history["val_age_bin_acc"].between(0, 1)).all()
    loaded = subprocess.run(
        [sys.executable, "-c", f"from agelab.model_files import load_model; print(load_model({str(run_dir / 'model.keras')!r})[1]['model'])"],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300,
    )  # fmt: skip
    assert loaded.returncode == 0 and loaded.stdout.strip() == "small_cnn", loaded.stderr[-2000:]
    assert json.loads((run_dir / "metrics.json").read_text())["n_test"] > 0


def test_ranges_refuse_a_teacher_or_mixup_in_one_sentence(utkface_dir, tmp_path, isolated_dirs):
    from agelab.commands import train as train_command

    folder = tmp_path / "ranged"
    folder.mkdir()
    copied = copy_real_images(utkface_dir, tmp_path / "utk", 40, step=500)
    for i, path in enumerate(copied):
        shutil.copy2(path, folder / f"p{i}.jpg")
    rows = [f"p{i}.jpg,20,29,female" for i in range(len(copied))]
    (folder / "labels.csv").write_text("file,age_low,age_high,gender\n" + "\n".join(rows) + "\n")
    code = train_command.cli(
        [f"data={folder}", "model=small_cnn", "weights=none", "image_size=64", "mixup=0.2", "crop=none"]
    )
    assert code == 1
    status = json.loads(next((isolated_dirs / "runs").glob("*/status.json")).read_text())
    assert "mixup cannot train on age ranges" in status.get("error", "")
