"""The label-noise finder on real UTKFace faces whose labels were flipped on purpose."""

from __future__ import annotations

import numpy as np
import pytest

from agelab.bins import GROUPS10
from agelab.label_noise import confident_learning, find_label_issues


def test_confident_learning_flags_a_class_above_its_own_threshold():
    labels = np.array([0, 0, 0, 1, 1, 1])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.1, 0.9], [0.3, 0.7], [0.95, 0.05]])
    confident, quality, thresholds = confident_learning(labels, probs)
    assert thresholds == pytest.approx([(0.9 + 0.8 + 0.2) / 3, (0.9 + 0.7 + 0.05) / 3])
    assert confident.tolist() == [0, 0, 1, 1, 1, 0]  # the third and the last look mislabelled
    assert quality[2] < 0 and quality[5] < 0 and quality[0] > 0


@pytest.mark.slow
def test_flipped_labels_rank_in_the_finders_top_five_percent(utkface_dir, isolated_dirs):
    from agelab import models, pipeline
    from agelab.saved_split import load_dataset

    frame = load_dataset(utkface_dir)
    frame = frame[frame["split"] == "train"].sample(1500, random_state=0).reset_index(drop=True)
    built = models.create_model("face_mobilenet", 128, GROUPS10.num_bins, weights="imagenet")
    features, _ = pipeline.cached_features(
        built.features, frame, 128, {"model": "face_mobilenet", "size": 128}
    )
    rng = np.random.default_rng(1)
    flipped = rng.choice(len(frame), 75, replace=False)  # 5 %
    noisy = frame.copy()
    gender, age = flipped[:40], flipped[40:]
    noisy.loc[gender, "gender"] = 1 - noisy.loc[gender, "gender"]
    # Three groups or more away: a child labelled 70, an adult labelled 2.
    noisy.loc[age, "age"] = np.where(GROUPS10.bin_of(noisy.loc[age, "age"].to_numpy()) < 5, 70, 2)
    issues = find_label_issues(noisy, features, GROUPS10)
    top = set(issues.top(0.05)["path"])
    found = len(top & set(noisy.loc[flipped, "path"])) / len(flipped)
    assert found > 0.5, found
    suspects = issues.suspects().set_index("path")["suspect"]
    assert suspects.reindex(noisy.loc[gender, "path"]).fillna("").str.contains("gender").mean() > 0.5
