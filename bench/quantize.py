"""LiteRT quantization of a model: size, speed and accuracy on the saved test split, in one run.

    .venv/bin/python bench/quantize.py [--model models/agelab-default.keras] [--calibration 300]

Converts the model four ways (float32, dynamic-range, float16 weights, int8 calibrated on the 300
training-split faces that ``export --int8`` uses), runs each with the LiteRT interpreter (XNNPACK,
2 threads) on every test-split face as ``evaluate`` crops it (aligned by the detector for a model
trained so), and prints a markdown table: file size, ms per face (batch 1 and batch 64), exact / within-1
bin accuracy, age MAE and gender accuracy with 95 % intervals, and each variant's change against
float32 beside the float32 interval's half-width (a quantization is worth shipping only when its
change is smaller than that). The scores are of the raw outputs (no temperature; the age is the
years head's), which is what quantization changes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agelab import litert_export, litert_serving  # noqa: E402
from agelab.bins import get_scheme  # noqa: E402
from agelab.ensemble import single_view  # noqa: E402
from agelab.evaluation.intervals import bootstrap_mean_interval, wilson_interval  # noqa: E402
from agelab.model_files import default_model, load_keras  # noqa: E402
from agelab.predictor import Predictor  # noqa: E402

VARIANTS = ("none", "dynamic", "float16", "int8")
NAMES = {"none": "float32", "dynamic": "dynamic-range int8 weights", "float16": "float16 weights"}
NAMES["int8"] = "int8 weights and activations"


def run(model: litert_serving.LiteRTModel, images: np.ndarray, batch: int = 64) -> dict[str, np.ndarray]:
    parts = [model(images[i : i + batch]) for i in range(0, len(images), batch)]
    return {k: np.concatenate([p[k] for p in parts]) for k in litert_serving.OUTPUTS}


def speed(model: litert_serving.LiteRTModel, images: np.ndarray, batch: int, faces: int) -> float:
    """ms per face at a batch size (warm)."""
    model(images[:batch])
    start = time.perf_counter()
    done = 0
    while done < faces:
        model(images[done % 1024 : done % 1024 + batch])
        done += batch
    return (time.perf_counter() - start) * 1000 / done


def speeds(
    models: list[litert_serving.LiteRTModel], images: np.ndarray, rounds: int = 5
) -> list[dict[str, float]]:
    """ms per face at batch 1 and 64 for each model, the best of ``rounds`` interleaved rounds (each
    round times every model in turn, so a busy machine slows them all alike)."""
    best = [{"ms1": np.inf, "ms64": np.inf} for _ in models]
    for _ in range(rounds):
        for model, row in zip(models, best):
            row["ms1"] = min(row["ms1"], speed(model, images, 1, faces=64))
            row["ms64"] = min(row["ms64"], speed(model, images, 64, faces=256))
    return best


def metrics(out: dict[str, np.ndarray], ages: np.ndarray, genders: np.ndarray, scheme) -> dict[str, tuple]:
    true_bin = scheme.bin_of(ages)
    pred_bin = out["age_bin"].argmax(1)
    n = len(ages)
    exact = (pred_bin == true_bin).sum()
    within1 = (np.abs(pred_bin - true_bin) <= 1).sum()
    gender = ((out["gender"].reshape(-1) >= 0.5).astype(int) == genders).sum()
    errors = np.abs(out["age"].reshape(-1) - ages)
    return {
        "exact": (exact / n, *wilson_interval(int(exact), n)),
        "within1": (within1 / n, *wilson_interval(int(within1), n)),
        "mae": (errors.mean(), *bootstrap_mean_interval(errors)),
        "gender": (gender / n, *wilson_interval(int(gender), n)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a .keras file or run folder (default: the shipped model)")
    parser.add_argument("--calibration", type=int, default=300, help="training images to calibrate int8 on")
    args = parser.parse_args()
    model_path = Path(args.model or default_model())
    predictor = Predictor(model_path, backend="keras")
    scheme = get_scheme(predictor.scheme)
    # The faces as evaluate and predict crop them (aligned by the detector for this model), and the
    # same training-split faces that ``export --int8`` calibrates on.
    test, images = litert_export.prepared_faces(predictor.meta, "test")
    _, calibration = litert_export.prepared_faces(predictor.meta, "train", args.calibration)
    ages, genders = test["age"].to_numpy(), test["gender"].to_numpy().astype(int)
    keras_model, mirror_views = single_view(load_keras(predictor.model_path))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant in VARIANTS:
            start = time.perf_counter()
            data = litert_export.convert(
                keras_model,
                variant,
                representative=lambda: (calibration[i : i + 32] for i in range(0, len(calibration), 32)),
            )
            convert_s = time.perf_counter() - start
            path = Path(tmp) / f"{variant}.tflite"
            path.write_bytes(data)
            lite = litert_serving.LiteRTModel(path, mirror_views=mirror_views)
            out = run(lite, images)
            rows.append(
                {
                    "variant": variant,
                    "bytes": len(data),
                    "lite": lite,
                    "metrics": metrics(out, ages, genders, scheme),
                    "agree": None,
                    "out": out,
                    "convert_s": convert_s,
                }
            )
            print(f"{variant}: converted in {convert_s:.0f} s", file=sys.stderr)
    for row, timing in zip(rows, speeds([row["lite"] for row in rows], images)):
        row.update(timing)
    base = rows[0]
    for row in rows:
        row["agree"] = float((row["out"]["age_bin"].argmax(1) == base["out"]["age_bin"].argmax(1)).mean())
    print(
        f"model {model_path.name}, test split n={len(test)}, LiteRT XNNPACK {litert_serving.THREADS} threads\n"
    )
    print(
        "| variant | size | ms/face b1 | ms/face b64 | exact | within 1 | age MAE | gender | same bin as float32 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        m = row["metrics"]

        def pct(key: str, m: dict = m) -> str:
            value, lo, hi = m[key]
            return f"{100 * value:.1f} % [{100 * lo:.1f}, {100 * hi:.1f}]"

        mae, lo, hi = m["mae"]
        print(
            f"| {NAMES[row['variant']]} | {row['bytes'] / 1e6:.2f} MB | {row['ms1']:.2f} | {row['ms64']:.2f} "
            f"| {pct('exact')} | {pct('within1')} | {mae:.2f} [{lo:.2f}, {hi:.2f}] | {pct('gender')} "
            f"| {100 * row['agree']:.1f} % |"
        )
    print("\nchange against float32 (and float32's 95 % interval half-width):")
    for row in rows[1:]:
        changes = []
        for key, scale, unit in (
            ("exact", 100, " pt"),
            ("within1", 100, " pt"),
            ("mae", 1, " y"),
            ("gender", 100, " pt"),
        ):
            value, (b, lo, hi) = row["metrics"][key][0], base["metrics"][key]
            changes.append(f"{key} {scale * (value - b):+.2f}{unit} (+/-{scale * (hi - lo) / 2:.2f})")
        speedup = base["ms1"] / row["ms1"]
        print(f"  {NAMES[row['variant']]}: {', '.join(changes)}; b1 speed x{speedup:.2f} of float32")
    return 0


if __name__ == "__main__":
    sys.exit(main())
