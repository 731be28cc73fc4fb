"""``evaluate --data`` on a labelled folder (labels.csv) of real All-Age-Faces photos: no bench needed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from agelab.paths import PROJECT_ROOT
from tests.predict_helpers import save_contract_model
from tests.real_data import SHARED, require

AAF_DEV = SHARED / "data" / "aaf-dev"


def test_evaluate_scores_a_labelled_folder_and_reports_women_men_and_decades(tmp_path, isolated_dirs):
    source = require(AAF_DEV if (AAF_DEV / "labels.csv").is_file() else None, "aaf-dev folder")
    labels = pd.read_csv(source / "labels.csv").iloc[::40].reset_index(drop=True)
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in labels["file"]:
        shutil.copy2(source / name, folder / name)
    rows = labels.copy()
    rows.loc[0, ["age_low", "age_high"]] = [20, 29]  # a range, FairFace's way
    bad = pd.DataFrame([{"file": rows.loc[1, "file"], "age_low": 30, "age_high": 30, "gender": "unknown"}])
    rows = pd.concat(
        [
            rows.drop(index=1),
            bad,
            pd.DataFrame([{"file": "gone.jpg", "age_low": 5, "age_high": 5, "gender": "male"}]),
        ]
    )
    rows.to_csv(folder / "labels.csv", index=False)
    model = save_contract_model(tmp_path / "model")
    out = tmp_path / "eval.parquet"
    result = subprocess.run(
        [sys.executable, "-m", "agelab", "evaluate", "--model", str(model), "--data", str(folder), "--out", str(out)],
        capture_output=True, text=True, cwd=PROJECT_ROOT, env=dict(os.environ), timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["n"] == len(labels) - 1 and summary["skipped_bad_label"] == 2
    assert "gender='unknown' is not female or male" in result.stderr and "gone.jpg" in result.stderr
    fairness = summary["gender_fairness"]
    women = int((rows["gender"] == "female").sum())
    assert fairness["women"]["n"] == women and fairness["men"]["n"] == summary["n"] - women
    assert fairness["women"]["low"] <= fairness["women"]["gender_acc"] <= fairness["women"]["high"]
    assert sum(row["n"] for row in fairness["decades"].values()) == summary["n"]
    predictions = pd.read_parquet(out)
    ranged = predictions[predictions["path"].str.endswith(rows.iloc[0]["file"])].iloc[0]
    # The truth of a range is its point nearest to the prediction.
    assert ranged["age"] == pytest.approx(np.clip(ranged["pred_age"], 20, 29))
