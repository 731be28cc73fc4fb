"""Predictions for image files: every face in files or folders, one JSON-ready record per image, and the
flat CSV table of them (one row per face). The faces come from :mod:`agelab.predictor`; the command
line (``python -m agelab predict``) is :mod:`agelab.commands.predict`.
"""

from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path
from typing import Any

from agelab import atomic
from agelab.data import IMAGE_SUFFIXES
from agelab.face_boxes import left_to_right, missed_faces_hint
from agelab.faces import FaceDetector
from agelab.images import ImageError, load_image
from agelab.predictor import Predictor, predict_image


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
