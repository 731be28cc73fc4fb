"""``python -m agelab predict``: every face in image files or folders, one JSON line per image, optionally
a CSV table.

    python -m agelab predict photos/ --model runs/mobilenet_v2-3 --out faces.csv

The model comes from :mod:`agelab.model_files` (default: the shipped model), the records and the table
from :mod:`agelab.file_predictions`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from agelab import atomic
from agelab.backends import BACKEND_HELP, BACKENDS
from agelab.faces import KINDS, FaceDetector
from agelab.file_predictions import (
    flat_rows,
    iter_images,
    out_refusal,
    predict_file,
    readable_path,
    write_csv,
)
from agelab.model_files import DEFAULT_MODEL_NAME, MODEL_SPEC_HELP, ModelError, default_model
from agelab.paths import models_dir
from agelab.predictor import load_predictor


def record_notes(record: dict[str, Any]) -> list[str]:
    """What a person reading the terminal should know about one image's result, in words."""
    if "error" in record:
        return [record["error"]]
    faces = record.get("faces") or []
    hints = [record["hint"]] if record.get("hint") else []
    if not faces:
        return hints or [
            "no face found (for a face crop use --no-detect; for a faint face lower --min-score)"
        ]
    return hints + [
        f"face {i + 1} is uncertain: {'; '.join(face['reasons'])}"
        for i, face in enumerate(faces)
        if face.get("uncertain")
    ]


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agelab predict",
        description="Predict age group and gender for every face in images; one JSON line per image.",
    )
    parser.add_argument("paths", nargs="+", help="image files or folders of images")
    parser.add_argument(
        "--model",
        help=f"{MODEL_SPEC_HELP} (default: models/{DEFAULT_MODEL_NAME}, else the newest finished run)",
    )
    parser.add_argument("--no-detect", action="store_true", help="treat each image as one face crop")
    parser.add_argument(
        "--detector",
        choices=KINDS,
        default="auto",
        help="MediaPipe model range: auto (short range, and full range too unless the faces fill the "
        "frame), short (close-ups), full (faces far away)",
    )
    parser.add_argument("--detector-model", help="a face detector .tflite file (else AGELAB_FACE_MODEL)")
    parser.add_argument("--min-score", type=float, default=0.5, help="minimum detection confidence (0-1)")
    parser.add_argument("--out", help="also write a flat CSV table, one row per face")
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help=BACKEND_HELP)
    args = parser.parse_args(argv)
    if not 0.0 <= args.min_score <= 1.0:
        parser.error(f"--min-score {args.min_score}: must be between 0 and 1")
    files = iter_images(args.paths)
    if args.out and (refusal := out_refusal(Path(args.out), files)):
        print(f"agelab predict: {refusal}", file=sys.stderr)
        return 2
    model_path = args.model or default_model()
    if model_path is None:
        print(
            f"agelab predict: no model given and none found; pass --model with a run folder or .keras file "
            f"(models are looked for in {models_dir()} and the finished runs)",
            file=sys.stderr,
        )
        return 2
    try:
        predictor = load_predictor(model_path, args.backend)
        detector = None if args.no_detect else FaceDetector(args.detector, args.detector_model)
    except (ModelError, RuntimeError, ValueError) as exc:
        print(f"agelab predict: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a model file this user may not read
        print(f"agelab predict: {atomic.why_not_written(exc.filename or model_path, exc)}", file=sys.stderr)
        return 2
    if not files:
        print(f"agelab predict: no image files in {', '.join(args.paths)}", file=sys.stderr)
        return 2
    records = []
    for path in files:
        record = predict_file(path, detector, predictor, args.min_score)
        records.append(record)
        print(atomic.dumps(record), flush=True)
        for note in record_notes(record):
            print(f"{readable_path(str(path))}: {note}", file=sys.stderr)
    if detector is not None:
        detector.close()
    if args.out:
        try:
            write_csv(args.out, records)
        except OSError as exc:  # the predictions are on stdout above; only the table is missing
            print(
                f"agelab predict: the table was not saved: {atomic.why_not_written(exc.filename or args.out, exc)}",
                file=sys.stderr,
            )
            return 1
        print(f"wrote {args.out} ({len(flat_rows(records))} rows)", file=sys.stderr)
    return 1 if all("error" in r for r in records) else 0
