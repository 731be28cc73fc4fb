"""``python -m agelab export``: a saved model's LiteRT twins written and recorded in its sidecar."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from agelab import atomic
from agelab.backends import TWINS
from agelab.model_files import MODEL_SPEC_HELP, ModelError, read_sidecar


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agelab export",
        description="Export a saved model to LiteRT: writes X.tflite beside X.keras and records both in X.json. "
        "The Predict page, predict and evaluate then serve it with LiteRT.",
    )
    parser.add_argument("--model", required=True, help=MODEL_SPEC_HELP)
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also write X.int8.tflite (int8, calibrated on training-split faces), which then serves first",
    )
    parser.add_argument("--calibration", type=int, default=300, help="training faces to calibrate int8 on")
    parser.add_argument(
        "--data",
        default=None,
        help="the data for --int8, as train's data= takes it: a folder or several, comma-separated "
        "(default data/UTKFace)",
    )
    args = parser.parse_args(argv)
    if args.calibration < 1:
        parser.error(f"--calibration {args.calibration}: calibrate on at least 1 face (300 is the default)")
    from agelab.litert_export import export, export_int8
    from agelab.litert_serving import LiteRTError

    start = time.perf_counter()
    try:
        out = export(args.model)
        int8 = export_int8(args.model, args.calibration, data=args.data) if args.int8 else None
    except (ModelError, LiteRTError, FileNotFoundError) as exc:
        print(f"agelab export: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a read-only folder, a full disk: the old files stay as they were
        print(f"agelab export: {atomic.why_not_written(exc.filename or args.model, exc)}", file=sys.stderr)
        return 1
    meta = read_sidecar(args.model)
    report: dict[str, Any] = {
        "tflite": str(out),
        "bytes": meta[TWINS["float32"].record_key]["bytes"],
        "max_abs_gap": meta[TWINS["float32"].record_key]["max_abs_gap"],
    }
    if int8 is not None:
        record = meta[TWINS["int8"].record_key]
        report.update(
            int8_tflite=str(int8), int8_bytes=record["bytes"], int8_agreement=record["agreement_with_keras"]
        )
    report["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(report))
    return 0
