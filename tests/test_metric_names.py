"""One metric vocabulary (agelab.metric_names): a run's metrics.json keys are read through its table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from agelab import run_display
from agelab.bins import GROUPS10
from agelab.evaluation.metrics import headline, run_metrics
from agelab.evaluation.predictions import predictions_frame, with_derived_columns
from agelab.metric_names import METRICS, from_run_metrics


def test_a_runs_metrics_read_back_in_the_vocabulary_equal_the_headline():
    rng = np.random.default_rng(0)
    ages = rng.integers(1, 90, 200)
    records = [{"path": f"{a}_0_0_x.jpg", "age": int(a), "gender": int(a % 2), "race": 0} for a in ages]
    probs = rng.dirichlet(np.ones(GROUPS10.num_bins), 200)
    outputs = {"age_bin": probs, "age": ages + rng.normal(0, 5, 200), "prob_female": rng.uniform(0, 1, 200)}
    frame = predictions_frame(pd.DataFrame(records).to_dict("records"), outputs, GROUPS10, GROUPS10)
    stored = run_metrics(frame, GROUPS10)  # what a run writes into metrics.json
    assert set(stored) == {m.run_key for m in METRICS.values()}
    read = from_run_metrics(stored)
    direct = headline(with_derived_columns(frame, GROUPS10))
    for name, m in METRICS.items():
        assert read[name] == (round(direct[name], m.places) if m.places else direct[name]), name
    text = run_display.test_scores_text(stored)
    assert f"exact group {100 * read['exact']:.1f} %" in text and "(200 faces)" in text
