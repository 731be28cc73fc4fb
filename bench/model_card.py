"""The measured tables of a model card: the UTKFace test split by slice, photos from outside UTKFace by
age decade x gender, and the calibration of both heads, each with 95 % intervals.

    .venv/bin/python bench/model_card.py [--model M] [--labels ../shared/data/aaf-dev/labels.csv]

Everything goes through what ``agelab evaluate`` and ``agelab predict`` run (detector, aligned crop,
the model's LiteRT twin or Keras, calibration). Prints markdown for models/README.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from quality import test_split_folder  # noqa: E402

from agelab.bins import GROUPS10  # noqa: E402
from agelab.evaluation.evaluate import evaluate_folder  # noqa: E402
from agelab.evaluation.metrics import group_metrics, slice_metrics  # noqa: E402
from agelab.evaluation.predictions import with_derived_columns  # noqa: E402
from agelab.faces import FaceDetector  # noqa: E402
from agelab.labelled_photos import read_labels, score_photos  # noqa: E402
from agelab.model_files import (  # noqa: E402
    BACKEND_HELP,
    BACKENDS,
    default_model,
)
from agelab.predictor import load_predictor  # noqa: E402

HEADER = (
    "| slice | group | n | age MAE | gender acc % | exact % | within 1 % |\n|---|---|---|---|---|---|---|"
)


def row(slice_name: str, group: str, m: dict[str, float]) -> str:
    def pct(key: str) -> str:
        return f"{100 * m[key]:.1f} ({100 * m[key + '_lo']:.1f}-{100 * m[key + '_hi']:.1f})"

    mae = f"{m['mae']:.2f} ({m['mae_lo']:.2f}-{m['mae_hi']:.2f})"
    return f"| {slice_name} | {group} | {m['n']} | {mae} | {pct('gender_acc')} | {pct('exact')} | {pct('within1')} |"


def decade_slices(frame: pd.DataFrame) -> list[str]:
    """Rows for all, gender, age decade and decade x gender."""
    frame = frame.assign(decade=(np.floor(frame["age"] / 10) * 10).astype(int))
    frame["decade_label"] = frame["decade"].map(lambda d: f"{d}-{d + 9}" if d < 70 else "70+")
    frame.loc[frame["decade"] >= 70, "decade"] = 70
    lines = [row("all", "all", group_metrics(frame))]
    for (_, label), group in frame.groupby(["gender", "gender_label"]):
        lines.append(row("gender", label, group_metrics(group)))
    for (_, label), group in frame.groupby(["decade", "decade_label"]):
        lines.append(row("age decade", label, group_metrics(group)))
    for (_, label, _, gender), group in frame.groupby(["decade", "decade_label", "gender", "gender_label"]):
        lines.append(row("decade x gender", f"{label} / {gender}", group_metrics(group)))
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument(
        "--labels", default=None, help="a labelled set from outside UTKFace (bench/quality.py --labels)"
    )
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help=BACKEND_HELP)
    args = parser.parse_args()
    model = args.model or default_model()
    predictor = load_predictor(model, args.backend)
    print(f"model: {model}; {getattr(predictor, 'backend_note', '')}\n")
    calibration = predictor.meta.get("calibration")
    if calibration:
        print("## Calibration (validation split, expected calibration error, 15 bins)\n")
        print("| head | temperature | ECE before | ECE after |\n|---|---|---|---|")
        for head, name in (("age_bin", "age group"), ("gender", "gender")):
            print(
                f"| {name} | {calibration[head + '_temperature']:.2f} | {calibration[head + '_ece_before']:.3f} "
                f"| {calibration[head + '_ece_after']:.3f} |"
            )
        print()
    with tempfile.TemporaryDirectory() as tmp:
        result = evaluate_folder(predictor, test_split_folder(Path(tmp)), scheme=GROUPS10)
    test = with_derived_columns(result.predictions, GROUPS10)
    print(f"## UTKFace test split ({len(test)} images)\n")
    print(HEADER)
    slices = slice_metrics(test, ["all", "gender", "gender x ethnicity", "age bin", "source"])
    for record in slices.to_dict("records"):
        print(row(record["slice"], record["group"], record))
    print(f"\n### UTKFace test split by age decade, women and men apart\n\n{HEADER}")
    for line in decade_slices(test)[1:]:
        print(line)
    if "face_found" in test:
        print(f"\nThe detector found the face in {int(test['face_found'].sum())} of {len(test)} test images.")
    if args.labels:
        labels = read_labels(args.labels)
        with FaceDetector() as detector:
            photos, skipped = score_photos(predictor, Path(args.labels).parent, labels, detector)
        frame = with_derived_columns(photos, GROUPS10)
        print(f"\n## Outside UTKFace: {args.labels} ({len(frame)} photos, {len(skipped)} unreadable)\n")
        print(HEADER)
        for line in decade_slices(frame):
            print(line)
        print(f"\nNo face found in {int((~photos['face_found']).sum())} photos (placed on the template).")
        bias = float((frame["pred_age"] - frame["age"]).mean())
        print(f"Mean signed age error: {bias:+.2f} years (negative: predicted too young).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
