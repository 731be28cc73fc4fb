"""A new model made ready to serve in one step: built, calibrated on its validation split, exported to
LiteRT (and int8 on request), all staged beside its destination and moved into place only when every
step succeeded, so a failure leaves an existing model and its twins as they were."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from agelab import ensemble, litert_export
from agelab.model_calibration import calibrate_model


def release_ensemble(
    models: list[str | Path], out: str | Path, flip: bool = False, int8: bool = False, data: str | None = None
) -> dict[str, Any]:
    """Average ``models`` (:func:`agelab.ensemble.build`) into ``out``, calibrate and export it; what
    ``python -m agelab ensemble`` prints: the model, its twins and its calibration."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.stem}.", dir=out.parent))
    try:
        staged = staging / out.name
        built = ensemble.build(models, staged, flip)
        result = calibrate_model(built, data)
        litert_export.export(built)
        if int8:
            litert_export.export_int8(built, data=data)
        files = ensemble.install(staged, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report: dict[str, Any] = {"model": str(out), "litert": str(files["litert"]), "calibration": result}
    if "litert_int8" in files:
        report["litert_int8"] = str(files["litert_int8"])
    return report
