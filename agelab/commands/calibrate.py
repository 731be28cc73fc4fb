"""``python -m agelab calibrate``: fit a saved model's confidence and record it in its sidecar."""

from __future__ import annotations

import argparse
import json
import sys

from agelab import atomic
from agelab.model_files import MODEL_SPEC_HELP


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agelab calibrate",
        description="Fit a saved model's confidence (temperature scaling of the age-group and gender "
        "heads) on its dataset's validation split, and record it in the model's sidecar.",
    )
    parser.add_argument("--model", required=True, help=MODEL_SPEC_HELP)
    parser.add_argument(
        "--data", default=None, help="the UTKFace folder it was trained on (default: data/UTKFace)"
    )
    args = parser.parse_args(argv)
    from agelab.model_calibration import calibrate_model

    try:
        result = calibrate_model(args.model, args.data)
    except (ValueError, FileNotFoundError) as err:
        print(f"agelab calibrate: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # a read-only folder, a full disk: the sidecar stays as it was
        print(f"agelab calibrate: {atomic.why_not_written(err.filename or args.model, err)}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0
