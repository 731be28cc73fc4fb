"""``python -m agelab ensemble``: average trained models into one, calibrated and exported."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agelab import atomic
from agelab.model_files import MODEL_SPEC_HELP, ModelError


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agelab ensemble",
        description="Average several trained models (and, with --flip, their mirror views) into one "
        "model; then calibrate it on the validation split and export its LiteRT twin.",
    )
    parser.add_argument("--models", nargs="+", required=True, help=f"the members, each {MODEL_SPEC_HELP}")
    parser.add_argument("--out", required=True, help="the .keras file to write (a sidecar goes beside it)")
    parser.add_argument("--flip", action="store_true", help="also average each model's mirror view")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also export the int8 LiteRT twin (python -m agelab export --int8)",
    )
    parser.add_argument(
        "--data",
        default=None,
        help="the data to calibrate on, as train's data= takes it: a folder or several, comma-separated "
        "(default data/UTKFace)",
    )
    args = parser.parse_args(argv)
    if Path(args.out).suffix != ".keras":
        parser.error(f"--out {args.out!r}: give a .keras file name")
    from agelab.litert_serving import LiteRTError
    from agelab.release import release_ensemble

    out = Path(args.out)
    if out.is_dir():
        print(
            f"agelab ensemble: --out {out} is a folder; give a file name such as {out / 'ensemble.keras'}",
            file=sys.stderr,
        )
        return 2
    try:
        report = release_ensemble(args.models, out, args.flip, args.int8, args.data)
    except (ModelError, ValueError, FileNotFoundError, LiteRTError) as err:
        print(f"agelab ensemble: {err}; {out} was not changed", file=sys.stderr)
        return 1
    except OSError as err:  # a full disk, a read-only folder
        print(
            f"agelab ensemble: {atomic.why_not_written(err.filename or out, err)}; {out} was not changed",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(report))
    return 0
