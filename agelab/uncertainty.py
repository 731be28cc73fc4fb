"""When a prediction should not be trusted, said in words: a close call between age groups, heads that
disagree, a face unlike the training faces.

The thresholds were measured, not guessed:
- framing: on 1,000 random UTKFace training images (seed 1) the keypoints' distance from the template
  after the best similarity fit (:func:`agelab.crop.alignment_residual`) had a median of 0.046 eye
  distances, 99th percentile 0.125 and 99.9th 0.151; above :data:`MAX_RESIDUAL` a face is posed or
  detected unlike any training face (a profile, a half-hidden face, a false detection);
- size: training faces are 200 px; below :data:`MIN_FACE_PX` the model input is upscaled over 3x;
- the probabilities are calibrated (temperature-scaled on the validation split), so a top age group
  under :data:`MIN_BIN_PROB` or a gender under :data:`MIN_GENDER_PROB` is right about that often.
"""

from __future__ import annotations

import numpy as np

from agelab.bins import BinScheme
from agelab.crop import alignment_residual

MIN_BIN_PROB = 0.40
MIN_GENDER_PROB = 0.75
MAX_RESIDUAL = 0.15
MIN_FACE_PX = 48


def prediction_reasons(
    scheme: BinScheme, bin_index: int, bin_prob: float, age_from_head: float, gender_prob: float
) -> list[str]:
    """Why a prediction is uncertain, from the model's outputs alone (empty: no reason)."""
    reasons = []
    if bin_prob < MIN_BIN_PROB:
        reasons.append(f"the age group is a close call (top group {bin_prob:.0%})")
    age_bin = int(scheme.bin_of(age_from_head))
    if abs(age_bin - bin_index) >= 2:
        reasons.append(
            f"the two age heads disagree: the group head says {scheme.labels[bin_index]}, "
            f"the years head {age_from_head:.0f} y ({scheme.labels[age_bin]})"
        )
    if gender_prob < MIN_GENDER_PROB:
        reasons.append(f"gender is a close call ({gender_prob:.0%})")
    return reasons


def framing_reasons(box: tuple[int, int, int, int] | None, keypoints: np.ndarray | None) -> list[str]:
    """Why a face is unlike the training faces (empty: it is like them)."""
    reasons = []
    if box is not None and max(box[2], box[3]) < MIN_FACE_PX:
        reasons.append(f"the face is small ({max(box[2], box[3])} px): details are lost")
    if keypoints is not None and len(keypoints) >= 4:
        residual = alignment_residual(keypoints)
        if residual > MAX_RESIDUAL:
            reasons.append("the face is turned or partly hidden, unlike the training faces")
    return reasons
