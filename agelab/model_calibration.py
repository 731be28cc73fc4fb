"""A saved model's confidence fitted on its dataset's validation split and recorded in its sidecar.

The temperatures themselves are :mod:`agelab.calibration`'s; this module feeds them the model's raw
outputs on the validation faces, cropped as the model is served (:func:`agelab.model_inputs.model_inputs`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agelab.calibration import calibrate
from agelab.model_files import record_in_sidecar
from agelab.model_inputs import model_inputs
from agelab.predictor import load_predictor


def calibrate_model(model_path: str | Path, data: str | Path | None = None) -> dict[str, float]:
    """Fit a saved model's temperatures on its dataset's validation split and write them into its
    sidecar (``calibration``); what ``python -m agelab calibrate`` runs. Returns the calibration."""
    from agelab.data_sources import load_data
    from agelab.images import load_image

    predictor = load_predictor(model_path)
    frame = load_data(data)
    val = frame[frame["split"] == "val"].reset_index(drop=True)
    if val.empty:
        raise ValueError(f"the dataset {data or 'data/UTKFace'} has no validation images to calibrate on")
    val = model_inputs(val, predictor.meta, log=lambda message: None)
    sources = val["input"]
    probs, female_prob = [], []
    for start in range(0, len(val), 256):
        batch = predictor.to_batch([load_image(p) for p in sources[start : start + 256]])
        raw = predictor.raw_outputs(batch)
        probs.append(raw["age_bin"])
        female_prob.append(raw["prob_female"])
    result = calibrate(
        np.concatenate(probs),
        predictor.scheme.bin_of(val["age"].to_numpy()),
        np.concatenate(female_prob),
        val["gender"].to_numpy() == 1,
    )
    record_in_sidecar(model_path, "calibration", result)
    return result
