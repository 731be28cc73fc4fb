"""The ``predict`` verb: every face in image files or folders, one JSON line per image, optionally a CSV.

    python -m agelab predict photos/ --model runs/mobilenet_v2-3 --out faces.csv

The model comes from :mod:`agelab.model_files` (default: the shipped model), the predictions from
:mod:`agelab.predictor`.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import time
from pathlib import Path
from typing import Any

from agelab import atomic
from agelab.data import IMAGE_SUFFIXES
from agelab.face_boxes import left_to_right, missed_faces_hint
from agelab.faces import KINDS, FaceDetector
from agelab.images import ImageError, load_image
from agelab.model_files import (
    BACKEND_HELP,
    BACKENDS,
    DEFAULT_MODEL_NAME,
    MODEL_SPEC_HELP,
    ModelError,
    default_model,
)
from agelab.paths import models_dir
from agelab.predictor import Predictor, load_predictor, predict_image


def iter_images(paths: list[str]) -> list[Path]:
    """Files as given, and the image files inside folders (recursively, sorted)."""
    out: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(path)
    return out


def predict_file(
    path: Path, detector: FaceDetector | None, predictor: Predictor, min_score: float
) -> dict[str, Any]:
    """One JSON-ready record: ``path``, ``faces`` and ``ms``, or ``error``."""
    start = time.perf_counter()
    record: dict[str, Any] = {"path": str(path)}
    try:
        image = load_image(path)
        results = predict_image(image, detector, predictor, min_score)
        # Numbered left to right, as on the Predict page's photo and table.
        results = [results[i] for i in left_to_right([r.box for r in results])]
        record["faces"] = [r.as_dict() for r in results]
        if detector is not None:
            height, width = image.shape[:2]
            if hint := missed_faces_hint(width, height, [r.box for r in results]):
                record["hint"] = hint
    except ImageError as exc:
        record["error"] = str(exc)
    record["ms"] = round((time.perf_counter() - start) * 1000, 1)
    return record


CSV_COLUMNS = ["path", "face", "x", "y", "w", "h", "score", "bin", "bin_label", "bin_prob", "age", "gender"]
CSV_COLUMNS += ["gender_prob", "uncertain", "reasons", "ms", "error"]


def readable_path(path: str) -> str:
    """A path (or a message naming one) as valid UTF-8 text: a file name that is not UTF-8 keeps its odd bytes as ``\\xff``
    escapes (Python holds them as lone surrogates, which no UTF-8 file can store)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def flat_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per face (and one per image without a face or with an error)."""
    rows = []
    for rec in records:
        base = {
            "path": readable_path(rec["path"]),
            "ms": rec.get("ms"),
            "error": readable_path(rec.get("error", "")),
        }
        faces = rec.get("faces") or []
        if not faces:
            rows.append({**base, "face": ""})
        for i, face in enumerate(faces):
            x, y, w, h = face["box"]
            extra = {
                k: face[k] for k in ("score", "bin", "bin_label", "bin_prob", "age", "gender", "gender_prob")
            }
            extra["uncertain"] = face.get("uncertain", False)
            extra["reasons"] = "; ".join(face.get("reasons", []))
            rows.append({**base, "face": i, "x": x, "y": y, "w": w, "h": h, **extra})
    return rows


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


def out_refusal(out: Path, inputs: list[Path]) -> str | None:
    """Why ``--out`` must not be written, before any work: it is a folder, or one of the input
    images (which the table would replace); None when it may be."""
    if out.is_dir():
        return f"--out {out} is a folder; give a file name such as {out / 'faces.csv'}"
    if out.exists() and any(out.samefile(p) for p in inputs if p.exists()):
        return f"--out {out} is one of the input images, which the table would replace; give another name such as faces.csv"
    return None


def write_csv(path: str | Path, records: list[dict[str, Any]]) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(flat_rows(records))
    return atomic.write_text(path, buffer.getvalue())


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


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
