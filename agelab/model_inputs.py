"""Which crop a model eats, decided in one place: the face detector's aligned crop for a model trained
on those (its sidecar's or run config's ``crop`` is ``"aligned"``), else the image file as it is.

Training, ``evaluate``, calibration, distillation's teacher and the int8 export's faces all ask here,
so a model is always fed what it was trained on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

ALIGNED = "aligned"


def uses_aligned_crops(meta: Mapping[str, Any]) -> bool:
    """Whether the model that ``meta`` (a sidecar, or a run's config) describes eats aligned crops."""
    return meta.get("crop") == ALIGNED


def model_inputs(
    frame: pd.DataFrame, meta: Mapping[str, Any], log: Callable[[str], None] = print
) -> pd.DataFrame:
    """``frame`` (a ``path`` column) with an ``input`` column: the file each row's face is fed to the
    model from, its cached aligned crop at the model's ``image_size`` (made where missing; images
    that cannot be decoded are dropped) or the image itself."""
    if uses_aligned_crops(meta):
        from agelab.crop_cache import aligned_inputs

        return aligned_inputs(frame, int(meta["image_size"]), log)
    return frame.assign(input=frame["path"]).reset_index(drop=True)
