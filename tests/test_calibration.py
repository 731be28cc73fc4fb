"""Confidence that means something: temperatures, ECE, the age inside its group, uncertainty in words."""

from __future__ import annotations

import numpy as np
import pytest

from agelab.bins import get_scheme
from agelab.calibration import (
    bin_ece,
    calibrate,
    finalize,
    fit_bin_temperature,
    fit_gender_temperature,
    gender_ece,
    scale_binary,
    scale_bins,
)
from agelab.commands.predict import record_notes
from agelab.crop import TEMPLATE
from agelab.uncertainty import framing_reasons, prediction_reasons

GROUPS10 = get_scheme("groups10")


def _honest(n: int, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels drawn from them: calibrated by construction."""
    probs = rng.dirichlet(np.full(k, 0.6), size=n)
    labels = np.array([rng.choice(k, p=p) for p in probs])
    return probs, labels


def test_an_over_confident_head_gets_its_temperature_back_and_its_ece_falls():
    rng = np.random.default_rng(0)
    probs, labels = _honest(6000, 10, rng)
    over_confident = scale_bins(probs, 0.5)  # logits doubled
    assert fit_bin_temperature(over_confident, labels) == pytest.approx(2.0, rel=0.1)
    assert bin_ece(over_confident, labels) > 3 * bin_ece(scale_bins(over_confident, 2.0), labels)
    # Temperature never changes which group is predicted.
    assert (scale_bins(over_confident, 2.0).argmax(1) == over_confident.argmax(1)).all()

    female_prob = rng.uniform(0.02, 0.98, 6000)
    female = rng.uniform(size=6000) < female_prob
    sharp = scale_binary(female_prob, 1 / 3)
    assert fit_gender_temperature(sharp, female) == pytest.approx(3.0, rel=0.1)
    assert gender_ece(sharp, female) > 3 * gender_ece(scale_binary(sharp, 3.0), female)


def test_calibrate_reports_both_heads_before_and_after():
    rng = np.random.default_rng(1)
    probs, labels = _honest(3000, 10, rng)
    female_prob = rng.uniform(0.02, 0.98, 3000)
    female = rng.uniform(size=3000) < female_prob
    result = calibrate(scale_bins(probs, 0.6), labels, scale_binary(female_prob, 0.6), female)
    assert result["n"] == 3000
    assert result["age_bin_temperature"] > 1.3 and result["gender_temperature"] > 1.3
    assert result["age_bin_ece_after"] < result["age_bin_ece_before"]
    assert result["gender_ece_after"] < result["gender_ece_before"]


def test_the_reported_age_is_the_years_heads_own_never_bent_into_the_group():
    probs = np.zeros((4, 10))
    probs[[0, 1, 2, 3], [6, 6, 0, 9]] = 1.0  # Adult (25-34), Adult, Baby (0-1), Senior (59+)
    outputs = {"age_bin": probs, "age": np.array([41.0, 29.0, 3.0, 90.0]), "prob_female": np.full(4, 0.5)}
    out = finalize(outputs, GROUPS10, None)
    np.testing.assert_allclose(out["age"], [41.0, 29.0, 3.0, 90.0])
    assert "age_raw" not in out
    # Where the two heads disagree by two groups, the reasons say so in words.
    reasons = prediction_reasons(GROUPS10, 0, 1.0, 6.0, 0.9)  # Baby (0-1) against 6 y, a Child
    assert any("disagree" in r and "6 y" in r for r in reasons)
    assert not prediction_reasons(GROUPS10, 6, 1.0, 29.0, 0.9)


def test_uncertainty_is_said_in_words():
    adult = GROUPS10.labels.index("Adult (25-34)")
    assert prediction_reasons(GROUPS10, adult, 0.8, 30.0, 0.95) == []
    reasons = prediction_reasons(GROUPS10, adult, 0.3, 52.0, 0.6)
    assert any("close call (top group 30%)" in r for r in reasons)
    assert any("disagree" in r and "52 y" in r for r in reasons)
    assert any("gender is a close call (60%)" in r for r in reasons)
    assert framing_reasons((0, 0, 120, 120), TEMPLATE) == []
    assert "small (30 px)" in framing_reasons((0, 0, 30, 30), None)[0]
    turned = TEMPLATE.copy()
    turned[2] += (45, 0)  # the nose far off the eyes' midline: a face in profile
    assert "turned" in framing_reasons((0, 0, 150, 150), turned)[0]


def test_the_terminal_says_no_face_and_uncertain_faces_in_words():
    assert "no face found" in record_notes({"path": "x.jpg", "faces": []})[0]
    assert record_notes({"path": "x.jpg", "error": "x.jpg: the file is empty (0 bytes)"}) == [
        "x.jpg: the file is empty (0 bytes)"
    ]
    face = {"uncertain": True, "reasons": ["gender is a close call (55%)"]}
    assert record_notes({"path": "x.jpg", "faces": [{"uncertain": False, "reasons": []}, face]}) == [
        "face 2 is uncertain: gender is a close call (55%)"
    ]
