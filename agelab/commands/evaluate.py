"""``python -m agelab evaluate``: a saved model on a folder of labelled images; its predictions saved
and its headline printed as one JSON line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agelab import atomic
from agelab.backends import BACKEND_HELP, BACKENDS
from agelab.bins import get_scheme
from agelab.evaluation.evaluate import evaluate_folder, summarize
from agelab.model_files import MODEL_SPEC_HELP, find_model


def _print_progress(done: int, total: int) -> None:
    print(f"\revaluating {done}/{total} files", end="" if done < total else "\n", file=sys.stderr, flush=True)


def cli(argv: list[str]) -> int:
    """``python -m agelab evaluate``: 0 when predictions were made and saved, 1 when none could be, 2
    for bad arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m agelab evaluate",
        description="Evaluate a saved agelab model on a folder of UTKFace-named images, or on a labelled "
        "folder (labels.csv). Prints one JSON line of headline metrics, with gender accuracy for women, men "
        "and each age decade, on stdout; unreadable, badly named or badly labelled files are skipped and counted.",
    )
    parser.add_argument("--model", required=True, help=MODEL_SPEC_HELP)
    parser.add_argument(
        "--data",
        required=True,
        help="folder of images named age_gender_race_datetime.jpg.chip.jpg, or of images beside a labels.csv "
        "(file,age_low,age_high,gender[,ethnicity])",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="where to save the predictions table (Parquet); default runs/evaluations/<model>-on-<folder>.parquet",
    )
    parser.add_argument(
        "--bins",
        default=None,
        help="bin scheme (groups10, equal12, decades or edges like 0,3,13,20,40,60); default: the model's. "
        "Another scheme derives the bins from the predicted age.",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="images per prediction batch (default 64)")
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help=BACKEND_HELP)
    crop = parser.add_mutually_exclusive_group()
    crop.add_argument(
        "--detect",
        dest="detect",
        action="store_true",
        default=None,
        help="feed the face detector's aligned crop (the default for models trained with crop=aligned)",
    )
    crop.add_argument(
        "--no-detect", dest="detect", action="store_false", help="feed each whole image as the face crop"
    )
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size {args.batch_size}: must be at least 1")
    try:
        scheme = None if args.bins is None else get_scheme(args.bins)
        model_path = find_model(args.model)
        if not Path(args.data).is_dir():
            raise FileNotFoundError(f"data folder {args.data!r} does not exist or is not a folder")
        if args.out and Path(args.out).is_dir():
            raise FileNotFoundError(
                f"--out {args.out!r} is a folder; give a file name such as {str(Path(args.out) / 'predictions.parquet')!r}"
            )
        if args.out and Path(args.out).suffix != ".parquet":
            # The summary goes beside the table as <name>.json: a table named x.json would be overwritten by it.
            raise ValueError(
                f"--out {args.out!r}: the predictions table is Parquet; give a name ending in .parquet"
                f" such as {str(Path(args.out).with_suffix('.parquet'))!r} (its summary goes beside it as .json)"
            )
    except (ValueError, FileNotFoundError) as err:
        print(f"agelab evaluate: {err}", file=sys.stderr)
        return 2

    from agelab.predictor import load_predictor

    try:
        predictor = load_predictor(model_path, args.backend)
    except Exception as err:  # noqa: BLE001  any load failure is reported in one line, naming the file
        print(f"agelab evaluate: cannot load the model {model_path}: {err}", file=sys.stderr)
        return 1
    try:
        result = evaluate_folder(
            predictor,
            args.data,
            scheme,
            batch_size=args.batch_size,
            progress=_print_progress if sys.stderr.isatty() else None,
            detect=args.detect,
        )
    except (FileNotFoundError, RuntimeError) as err:  # an unlistable folder, no face detector model
        print(f"agelab evaluate: {err}", file=sys.stderr)
        return 2
    summary, save_error = summarize(result, model_path, args.data, args.out)
    data_folder = Path(summary["data"])
    out = summary["out"]
    for item in result.skipped[:20]:
        print(f"  skipped {item['file']}: {item['reason']}", file=sys.stderr)
    if len(result.skipped) > 20:
        print(f"  ... and {len(result.skipped) - 20} more skipped files", file=sys.stderr)
    print(atomic.dumps(summary))
    if save_error:
        print(f"agelab evaluate: {save_error}", file=sys.stderr)
        return 1
    if not len(result.predictions):
        print(
            f"agelab evaluate: no usable image in {data_folder}: it needs UTKFace-named images or a labels.csv",
            file=sys.stderr,
        )
        return 1
    print(
        f"{summary['n']} images, {summary['skipped']} skipped: exact {summary['exact']:.1%}, within 1 bin "
        f"{summary['within1']:.1%}, age MAE {summary['mae']:.2f}, gender accuracy {summary['gender_acc']:.1%} "
        f"[{result.scheme.spec}]; predictions in {out}",
        file=sys.stderr,
    )
    return 0
