"""Confidence that means something: temperature scaling of the bin and gender heads, and the
expected calibration error (ECE) that shows whether a head's probabilities can be taken at their word.

A temperature T divides a head's logits: T > 1 softens an over-confident head, T < 1 sharpens it. The
model outputs probabilities (softmax / sigmoid), so the logits are recovered as their logarithms
(log-probabilities differ from the logits by a constant, which the softmax ignores).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agelab.bins import BinScheme

ECE_BINS = 15
_EPS = 1e-7


def scale_bins(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Bin probabilities ``(N, K)`` with the temperature applied to their logits."""
    if temperature == 1.0:
        return probs
    logits = np.log(np.clip(probs, _EPS, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(axis=1, keepdims=True)


def scale_binary(prob: np.ndarray, temperature: float) -> np.ndarray:
    """A probability (of female) with the temperature applied to its logit."""
    if temperature == 1.0:
        return prob
    p = np.clip(prob, _EPS, 1 - _EPS)
    return 1.0 / (1.0 + np.exp(-np.log(p / (1 - p)) / temperature))


def _nll_bins(probs: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    scaled = scale_bins(probs, temperature)
    return float(-np.log(np.clip(scaled[np.arange(len(labels)), labels], _EPS, 1.0)).mean())


def _nll_binary(prob: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    p = np.clip(scale_binary(prob, temperature), _EPS, 1 - _EPS)
    return float(-(labels * np.log(p) + (1 - labels) * np.log(1 - p)).mean())


def _best_temperature(nll: Any) -> float:
    """The temperature minimising ``nll(T)``: a log-spaced grid, then a finer one around its best."""
    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 61))
    best = grid[int(np.argmin([nll(t) for t in grid]))]
    fine = best * np.exp(np.linspace(-0.06, 0.06, 25))
    return float(fine[int(np.argmin([nll(t) for t in fine]))])


def fit_bin_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that best fits held-out bin labels (negative log-likelihood)."""
    return _best_temperature(lambda t: _nll_bins(probs, labels, t))


def fit_gender_temperature(prob_female: np.ndarray, female: np.ndarray) -> float:
    return _best_temperature(lambda t: _nll_binary(prob_female, female.astype(float), t))


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the gap between confidence and accuracy, averaged over equal-width confidence bins
    weighted by their share of the predictions."""
    confidence = np.asarray(confidence, float)
    correct = np.asarray(correct, float)
    if len(confidence) == 0:
        return float("nan")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(total)


def bin_ece(probs: np.ndarray, labels: np.ndarray) -> float:
    return expected_calibration_error(probs.max(axis=1), probs.argmax(axis=1) == labels)


def gender_ece(prob_female: np.ndarray, female: np.ndarray) -> float:
    guess = prob_female >= 0.5
    confidence = np.where(guess, prob_female, 1 - prob_female)
    return expected_calibration_error(confidence, guess == female.astype(bool))


def calibrate(
    bin_probs: np.ndarray, true_bins: np.ndarray, prob_female: np.ndarray, female: np.ndarray
) -> dict[str, float]:
    """Both heads' temperatures, fitted on held-out predictions, with the ECE before and after:
    what a model's sidecar keeps under ``calibration``."""
    t_bin = fit_bin_temperature(bin_probs, true_bins)
    t_gender = fit_gender_temperature(prob_female, female)
    return {
        "age_bin_temperature": round(t_bin, 4),
        "gender_temperature": round(t_gender, 4),
        "age_bin_ece_before": round(bin_ece(bin_probs, true_bins), 4),
        "age_bin_ece_after": round(bin_ece(scale_bins(bin_probs, t_bin), true_bins), 4),
        "gender_ece_before": round(gender_ece(prob_female, female), 4),
        "gender_ece_after": round(gender_ece(scale_binary(prob_female, t_gender), female), 4),
        "n": int(len(true_bins)),
    }


def apply(outputs: dict[str, np.ndarray], calibration: dict[str, Any] | None) -> dict[str, np.ndarray]:
    """A model's outputs (``age_bin``, ``prob_female``, ...) with its sidecar's temperatures applied."""
    if not calibration:
        return outputs
    out = dict(outputs)
    out["age_bin"] = scale_bins(outputs["age_bin"], float(calibration.get("age_bin_temperature", 1.0)))
    out["prob_female"] = scale_binary(
        outputs["prob_female"], float(calibration.get("gender_temperature", 1.0))
    )
    return out


def raw_predictions(outputs: dict[str, Any]) -> dict[str, np.ndarray]:
    """A model's outputs under the model contract (``age_bin`` (N, K), ``age`` (N, 1), ``gender``
    (N, 1)) as the raw predictions :func:`finalize` takes: ``age_bin`` (N, K), ``age`` (N,),
    ``prob_female`` (N,)."""
    age_bin = np.asarray(outputs["age_bin"])
    return {
        "age_bin": age_bin.reshape(len(age_bin), -1),
        "age": np.asarray(outputs["age"]).reshape(-1),
        "prob_female": np.asarray(outputs["gender"]).reshape(-1),
    }


def finalize(
    outputs: dict[str, np.ndarray], scheme: BinScheme, calibration: dict[str, Any] | None
) -> dict[str, np.ndarray]:
    """The reported prediction from a model's raw outputs (``age_bin`` (N, K), ``age`` (N,),
    ``prob_female`` (N,)): calibrated probabilities, and the years head's own age, unbent: where the
    group head and the years head disagree by two groups or more, the uncertainty reasons say so
    (:func:`agelab.uncertainty.prediction_reasons`). Every prediction (a run's test split, ``evaluate``,
    ``predict``, the pages) passes through here."""
    out = apply(outputs, calibration)
    out["age"] = np.asarray(outputs["age"], dtype=float).reshape(-1)
    return out
