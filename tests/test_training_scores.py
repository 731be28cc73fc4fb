"""A run's own test scores are what ``evaluate`` gives for the same model on the same test images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from agelab.evaluation import evaluate
from agelab.evaluation.metrics import RUN_METRICS, run_metrics
from agelab.training import run
from agelab.training.verb import train
from tests.real_data import copy_real_images


@pytest.fixture(scope="module")
def small_data(utkface_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("utk160")
    copy_real_images(utkface_dir, folder, 160, step=130)
    return folder


def test_a_runs_test_predictions_are_what_evaluate_gives(small_data, isolated_dirs, monkeypatch, capsys):
    # Whole 200 px UTKFace files resized to 64 px: where a second resize would show.
    config = {"data": str(small_data), "model": "small_cnn", "weights": "none", "image_size": 64,
              "epochs": 1, "batch_size": 16, "crop": "none", "name": "scores"}  # fmt: skip
    # Without the LiteRT twin, evaluate serves the very Keras model the run scored with.
    monkeypatch.setattr(run.Trainer, "_export_litert", lambda self: None)
    run_dir = train(config)
    own = pd.read_parquet(run_dir / "predictions.parquet")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    folder = isolated_dirs / "test_images"
    folder.mkdir()
    for path in own["path"]:
        shutil.copy2(path, folder / Path(path).name)
    out = isolated_dirs / "evaluated.parquet"
    capsys.readouterr()
    argv = ["--model", str(run_dir), "--data", str(folder), "--out", str(out), "--batch-size", "16"]
    assert evaluate.cli(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    evaluated = pd.read_parquet(out)

    def by_file(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.assign(path=frame["path"].map(lambda p: Path(p).name))
        return frame.sort_values("path").reset_index(drop=True)

    # Every image: the same bins, probabilities, ages and genders, to the bit.
    pd.testing.assert_frame_equal(by_file(own), by_file(evaluated), check_exact=True)
    scheme = json.loads((run_dir / "model.json").read_text())["bins"]
    assert run_metrics(evaluated, scheme) == {key: metrics[key] for key, _ in RUN_METRICS.values()}
    for name, (key, places) in RUN_METRICS.items():
        assert (
            summary[name] == metrics[key] if places is None else round(summary[name], places) == metrics[key]
        )
