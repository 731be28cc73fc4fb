"""A run's own test scores are what ``evaluate`` gives for the same model on the same test images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from agelab.commands import evaluate
from agelab.evaluation.metrics import RUN_METRICS, run_metrics
from agelab.training import run
from agelab.training.verb import train
from tests.real_data import real_images_fixture

small_data = real_images_fixture(160, step=130)


@pytest.mark.parametrize(
    "config",
    [
        # Whole 200 px UTKFace files resized to 64 px: where a second resize would show.
        {"model": "small_cnn", "weights": "none", "image_size": 64, "crop": "none", "name": "scores"},
        # Fast mode trains the heads on cached backbone features; the test split is still scored by
        # the saved model, on the detector's aligned crops as evaluate makes them.
        {
            "model": "mobilenet_v2",
            "alpha": 0.35,
            "image_size": 112,
            "fast": True,
            "crop": "aligned",
            "name": "fast",
        },
    ],
    ids=["images", "fast"],
)
def test_a_runs_test_predictions_are_what_evaluate_gives(
    config, small_data, isolated_dirs, monkeypatch, capsys
):
    # Without the LiteRT twin (an export that costs more than this test), both serve the Keras model.
    monkeypatch.setattr(run.Trainer, "_export_litert", lambda self: None)
    run_dir = train({**config, "data": str(small_data), "epochs": 1, "batch_size": 16})
    own = pd.read_parquet(run_dir / "predictions.parquet")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert ("feature_cache_hit" in metrics) == config.get("fast", False)  # fast mode's features were used
    folder = isolated_dirs / f"test_images_{config['name']}"
    folder.mkdir()
    for path in own["path"]:
        shutil.copy2(path, folder / Path(path).name)
    out = isolated_dirs / f"evaluated_{config['name']}.parquet"
    capsys.readouterr()
    assert evaluate.cli(["--model", str(run_dir), "--data", str(folder), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    evaluated = pd.read_parquet(out)

    def by_file(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.assign(path=frame["path"].map(lambda p: Path(p).name))
        return frame.sort_values("path").reset_index(drop=True)

    # Every image: the same bins, probabilities, ages and genders, to the bit.
    pd.testing.assert_frame_equal(by_file(own), by_file(evaluated), check_exact=True)
    assert ("face_found" in own) == (config["crop"] == "aligned")
    scheme = json.loads((run_dir / "model.json").read_text())["bins"]
    assert run_metrics(evaluated, scheme) == {key: metrics[key] for key, _ in RUN_METRICS.values()}
    for name, (key, places) in RUN_METRICS.items():
        assert (
            summary[name] == metrics[key] if places is None else round(summary[name], places) == metrics[key]
        )
