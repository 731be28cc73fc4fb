"""seed= makes a run repeat: two real training runs with one seed give the same predictions, bit for bit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from agelab.paths import PROJECT_ROOT
from tests.real_data import real_images_fixture

small_data = real_images_fixture(160, step=97)


def train(data: Path, name: str, *keys: str) -> Path:
    result = subprocess.run(
        [
            sys.executable, "-m", "agelab", "train", f"data={data}", f"name={name}", "model=small_cnn",
            "weights=none", "image_size=48", "epochs=2", "batch_size=16", "crop=none", "seed=5", *keys,
        ],
        capture_output=True, text=True, cwd=PROJECT_ROOT, env=dict(os.environ), timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_two_runs_with_one_seed_give_identical_predictions(small_data, isolated_dirs):
    first, second = train(small_data, "first"), train(small_data, "second")
    assert first != second
    a, b = pd.read_parquet(first / "predictions.parquet"), pd.read_parquet(second / "predictions.parquet")
    assert len(a) > 10
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    # Augmentation and shuffling ran (their random draws are part of what repeats).
    config = (first / "config.json").read_text()
    assert '"augment": true' in config and '"deterministic": true' in config
