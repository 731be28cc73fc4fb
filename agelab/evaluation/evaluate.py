"""The ``evaluate`` verb: a saved model on a folder of UTKFace-named images, its predictions saved
and its headline printed as one JSON line."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from agelab import atomic
from agelab.bins import BinScheme, get_scheme
from agelab.evaluation.fairness import gender_fairness
from agelab.evaluation.metrics import headline
from agelab.evaluation.predictions import with_derived_columns
from agelab.evaluation.scoring import predict_files, uses_aligned_crops
from agelab.evaluation.sources import evaluations_dir


@dataclass
class FolderEvaluation:
    """Predictions for every usable image of a folder, and the files that were skipped (with why)."""

    predictions: pd.DataFrame
    skipped: list[dict[str, str]]
    scheme: BinScheme
    seconds: float

    @property
    def skipped_counts(self) -> dict[str, int]:
        counts = {"malformed_name": 0, "bad_label": 0, "unreadable": 0}
        for item in self.skipped:
            counts[item["kind"]] += 1
        return counts


def evaluate_folder(
    predictor: Any,
    folder: str | Path,
    scheme: BinScheme | str | None = None,
    batch_size: int = 64,
    progress: Any = None,
    detect: bool | None = None,
) -> FolderEvaluation:
    """Run ``predictor`` on every UTKFace-named image in ``folder`` (not recursive).

    Each file whose name does not parse, or which cannot be decoded, is skipped and recorded with
    its reason; nothing in the folder stops the evaluation. ``detect`` (default: when the model was
    trained on aligned crops, per its sidecar's ``crop``) feeds it the face detector's aligned crop.
    """
    from agelab.data import Labels, MalformedName, is_file_entry, parse_name
    from agelab.evaluation.ranges import score_against_ranges
    from agelab.labels_csv import is_labelled_folder

    started = time.perf_counter()
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder {folder} does not exist or is not a folder")
    native = get_scheme(predictor.scheme)
    scheme = native if scheme is None else get_scheme(scheme)
    try:
        entries = sorted((e for e in os.scandir(folder) if is_file_entry(e)), key=lambda e: e.name)
    except PermissionError:
        raise FileNotFoundError(
            f"data folder {folder} cannot be listed (permission denied); give your user read access to it"
        ) from None
    items: list[tuple[str, Any]] = []
    skipped: list[dict[str, str]] = []
    labelled = None
    if is_labelled_folder(folder):
        # A labelled folder (labels.csv): its rows, each bad row and missing file skipped with why.
        from agelab.data_sources import load_index

        index = load_index(folder)
        labelled = index.frame
        items = [(r.path, Labels(r.age, r.gender, r.race, "")) for r in labelled.itertuples()]
        skipped = [
            {"file": r.file, "kind": "bad_label", "reason": r.reason} for r in index.malformed.itertuples()
        ]
    else:
        for entry in entries:
            try:
                items.append((entry.path, parse_name(entry.name)))
            except MalformedName as err:
                skipped.append({"file": entry.name, "kind": "malformed_name", "reason": str(err)})
    if detect is None:
        detect = uses_aligned_crops(predictor)
    frame, unreadable = predict_files(
        predictor, items, native, scheme, batch_size, progress, len(items), detect
    )
    if labelled is not None and scheme.spec == native.spec:
        frame = score_against_ranges(frame, labelled, native)
    return FolderEvaluation(frame, skipped + unreadable, scheme, time.perf_counter() - started)


def default_out(model_label: str, data_folder: Path, model_path: Path | None = None) -> Path:
    """``runs/evaluations/<model>-on-<folder>.parquet``. When that name already holds the evaluation of
    another folder (two folders with one base name) or of another model (two ``tiny.keras`` in two
    places), a hash of the model's and the folder's paths is added to the name, so neither
    evaluation overwrites the other."""
    out = evaluations_dir() / f"{model_label}-on-{data_folder.name}.parquet"
    saved = atomic.read_cache_json(out.with_suffix(".json"), {})
    model = str(Path(model_path).resolve()) if model_path is not None else None
    same = (
        isinstance(saved, dict)
        and saved.get("data") == str(data_folder)
        and (model is None or str(Path(str(saved.get("model", ""))).resolve()) == model)
    )
    if out.exists() and not same:
        key = hashlib.sha1(
            f"{model}\n{data_folder}".encode() if model else str(data_folder).encode()
        ).hexdigest()[:8]
        out = out.with_name(f"{model_label}-on-{data_folder.name}-{key}.parquet")
    return out


def disputed_mask(predictions: pd.DataFrame, folder: Path) -> pd.Series:
    """Which predictions are of faces marked on the Review page as "label looks wrong" (the folder's
    ``marks.csv``): test labels in dispute, reported apart; a marks file that cannot be read marks none."""
    from agelab.marks import load_marks

    try:
        marked = set(load_marks(folder)["file"].astype(str))
    except (OSError, ValueError):
        marked = set()
    return predictions["path"].astype(str).map(lambda p: Path(p).name in marked)


def summarize(
    result: FolderEvaluation, model_path: Path, data: str | Path, out: str | Path | None = None
) -> tuple[dict[str, Any], str | None]:
    """The evaluation's summary (headline, gender fairness, the disputed faces with and without them,
    the skipped counts) and its predictions table saved at ``out`` (default :func:`default_out`) with
    the summary beside it; the summary, and why the table could not be saved (``None`` when it was)."""
    model_label = model_path.parent.name if model_path.name == "model.keras" else model_path.stem
    data_folder = Path(data).resolve()
    out = Path(out) if out else default_out(model_label, data_folder, model_path)
    counts = result.skipped_counts
    summary: dict[str, Any] = {"n": len(result.predictions), "skipped": len(result.skipped)}
    if "face_found" in result.predictions:
        # Counted, not skipped: such an image is predicted whole, as training used it.
        summary["no_face_found"] = int((~result.predictions["face_found"].astype(bool)).sum())
    if len(result.predictions):
        summary.update(headline(with_derived_columns(result.predictions, result.scheme)))
        summary["gender_fairness"] = gender_fairness(result.predictions)
        disputed = disputed_mask(result.predictions, Path(data))
        if disputed.any():
            # Faces marked on Review as "label looks wrong": scored with them (above) and without them.
            kept = result.predictions[~disputed].reset_index(drop=True)
            summary["disputed"] = {
                "n": int(disputed.sum()),
                "without_them": headline(with_derived_columns(kept, result.scheme)),
            }
    summary.update(
        {
            "skipped_malformed_name": counts["malformed_name"],
            "skipped_bad_label": counts["bad_label"],
            "skipped_unreadable": counts["unreadable"],
            "bins": result.scheme.spec,
            "model": str(model_path),
            "data": str(data_folder),
            "out": str(out) if len(result.predictions) else None,
            "seconds": round(result.seconds, 2),
        }
    )
    summary = atomic.json_safe(summary)
    save_error = None
    if len(result.predictions):
        try:
            atomic.write_parquet(out, result.predictions)
            atomic.write_json(out.with_suffix(".json"), {**summary, "skipped_files": result.skipped})
        except OSError as err:
            out.unlink(missing_ok=True)  # no table without its summary
            summary["out"] = None
            save_error = f"cannot save the predictions to {out} ({err.strerror or err}); the metrics above were not saved"
    return summary, save_error
