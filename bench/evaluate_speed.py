"""How long ``agelab evaluate`` takes on the saved test split, served as agelab serves it now against
the runtimes it had before, in one run.

    .venv/bin/python bench/evaluate_speed.py [--model M] [--images N]

Both variants do the same work, what ``evaluate`` does for a model trained on aligned crops: decode
each test image, find its labelled face, align it, and predict in batches of 64
(:func:`agelab.evaluation.scoring.predict_files`):

- **before**: the detector run by MediaPipe Tasks' graph, the model by Keras (the compiled call);
- **now**: the detector model run by LiteRT directly (:mod:`agelab.blazeface`), the model by its
  LiteRT twin.

A third row, Keras on whole images without detection, is what ``evaluate`` ran before the
speed work (the model then was trained on whole images). Prints seconds, images per second, the speed-up,
and the headline metrics of each variant (the two detection variants must agree to within noise).
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agelab import faces  # noqa: E402
from agelab.bins import get_scheme  # noqa: E402
from agelab.evaluation.metrics import headline  # noqa: E402
from agelab.evaluation.predictions import with_derived_columns  # noqa: E402
from agelab.evaluation.scoring import predict_files  # noqa: E402
from agelab.model_files import default_model  # noqa: E402
from agelab.predictor import Predictor  # noqa: E402
from agelab.saved_split import load_dataset  # noqa: E402


def run(predictor: Predictor, items: list, detect: bool, detector_runtime: str) -> tuple[float, dict]:
    scheme = get_scheme(predictor.scheme)
    detector = functools.partial(faces.FaceDetector, runtime=detector_runtime)
    with mock.patch.object(faces, "FaceDetector", detector):
        start = time.perf_counter()
        frame, skipped = predict_files(predictor, items, scheme, scheme, 64, None, len(items), detect)
        seconds = time.perf_counter() - start
    assert not skipped, skipped[:3]
    return seconds, headline(with_derived_columns(frame, scheme))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default=None, help="a .keras model with its .tflite twin (default: shipped)"
    )
    parser.add_argument("--images", type=int, default=0, help="the first N test images (default: all)")
    args = parser.parse_args()
    model = Path(args.model) if args.model else default_model()
    if model is None:
        sys.exit("no model: give --model, or run `python -m agelab setup`")
    test = load_dataset().query("split == 'test'").sort_values("path")
    if args.images:
        test = test.head(args.images)
    items = [(row.path, row) for row in test.itertuples()]
    litert, keras = Predictor(model, backend="auto"), Predictor(model, backend="keras")
    print(f"model {model.name}; {len(items)} test images; batches of 64")
    variants = [
        ("before: Keras, detector by MediaPipe Tasks", keras, True, "mediapipe"),
        ("now: LiteRT twin, detector model by LiteRT", litert, True, "litert"),
        ("at filing: Keras, whole images, no detection", keras, False, "litert"),
    ]
    # A warm-up pass over a few images, so that no variant pays for the first compilation.
    for _, predictor, detect, runtime in variants:
        run(predictor, items[:64], detect, runtime)
    results = {}
    for label, predictor, detect, runtime in variants:
        results[label] = run(predictor, items, detect, runtime)
    base = results[variants[0][0]][0]
    print("\n| variant | seconds | images/s | speed-up vs before | MAE | gender | exact | within 1 |")
    print("|---|---|---|---|---|---|---|---|")
    for label, (seconds, metrics) in results.items():
        print(
            f"| {label} | {seconds:.1f} | {len(items) / seconds:.0f} | {base / seconds:.2f}x | "
            f"{metrics['mae']:.2f} | {metrics['gender_acc'] * 100:.1f} % | {metrics['exact'] * 100:.1f} % | "
            f"{metrics['within1'] * 100:.1f} % |"
        )
    now = results[variants[1][0]][0]
    print(f"\nevaluate with detection: {base / now:.2f}x faster than before (goal: 2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
