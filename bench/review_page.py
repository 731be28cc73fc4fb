"""Review page render times on a full-size test split (about 3,300 real predictions).

A real tiny run is trained (1 epoch of small_cnn on 400 images), then its model predicts every image
of the saved test split, which is saved as an evaluation. The page is run through AppTest on that
table: cold (empty caches), warm rerun, a filter change, a page flip and a bar click.
Baseline: the same steps on the tiny run's own 60-row test split, measured in the same run.
Times are server-side (script run and element serialisation), not browser paint.

usage: python bench/review_page.py [--data DIR] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agelab.paths import PROJECT_ROOT, data_dir  # noqa: E402

PAGE = str(PROJECT_ROOT / "pages" / "review.py")


def full_test_predictions(run_dir: Path, data: str) -> Path:
    """The run's model on every test-split image of ``data``, saved where the page finds it."""
    from agelab import atomic
    from agelab.evaluation.predictions import predictions_frame
    from agelab.evaluation.sources import evaluations_dir
    from agelab.images import load_image
    from agelab.predictor import load_predictor
    from agelab.saved_split import load_dataset

    predictor = load_predictor(run_dir)
    test = load_dataset(data)
    test = test[test["split"] == "test"].reset_index(drop=True)
    outputs: dict[str, list] = {"age_bin": [], "age": [], "prob_female": []}
    for start in range(0, len(test), 256):
        result = predictor.predict_crops([load_image(p) for p in test["path"][start : start + 256]])
        for key in outputs:
            outputs[key].append(result[key])
    import numpy as np

    joined = {k: np.concatenate(v) for k, v in outputs.items()}
    records = test[["path", "age", "gender", "race"]].to_dict("records")
    table = predictions_frame(records, joined, predictor.scheme, predictor.scheme)
    out = evaluations_dir() / "full-test-split.parquet"
    atomic.write_parquet(out, table)
    atomic.write_json(out.with_suffix(".json"), {"bins": predictor.scheme.spec, "n": len(table)})
    return out


def click_bar(at, distance: int) -> None:
    """What the browser sends when the bar of ``distance`` is selected."""
    at.session_state["rv_distance_chart"] = {
        "selection": {"points": [{"x": distance, "y": 1, "curve_number": 2}]}
    }


def timed_run(at, steps: dict[str, list[float]], name: str) -> None:
    start = time.perf_counter()
    at.run()
    steps[name].append(time.perf_counter() - start)
    assert not at.exception, [e.value for e in at.exception]


def measure(source_name: str, repeat: int) -> dict[str, float]:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    steps: dict[str, list[float]] = {"cold": [], "warm": [], "filter": [], "page flip": [], "bar click": []}
    for _ in range(repeat):
        st.cache_data.clear()
        at = AppTest.from_file(PAGE, default_timeout=300)
        at.session_state["rv_source"] = source_name
        timed_run(at, steps, "cold")
        timed_run(at, steps, "warm")
        at.selectbox(key="rv_dist_mode").set_value("exactly")
        timed_run(at, steps, "filter")
        at.pagination[0].set_value(min(3, at.pagination[0].proto.num_pages))
        timed_run(at, steps, "page flip")
        click_bar(at, 2)
        timed_run(at, steps, "bar click")
    return {name: statistics.median(times) for name, times in steps.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(data_dir()))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        os.environ["AGELAB_RUNS_DIR"] = str(Path(root) / "runs")
        os.environ["AGELAB_CACHE_DIR"] = str(Path(root) / "cache")
        from agelab.training.verb import train

        start = time.perf_counter()
        run_dir = train(
            {
                "model": "small_cnn",
                "weights": "none",
                "image_size": 64,
                "epochs": 1,
                "max_images": 400,
                "augment": False,
                "name": "tiny",
                "data": args.data,
            }
        )
        full = full_test_predictions(run_dir, args.data)
        import pandas as pd

        rows_tiny = len(pd.read_parquet(run_dir / "predictions.parquet"))
        rows_full = len(pd.read_parquet(full))
        print(f"set-up (train + predict {rows_full} test images): {time.perf_counter() - start:.1f} s")
        baseline = measure(run_dir.name, args.repeat)
        result = measure(f"evaluation: {full.stem}", args.repeat)
    print(f"{'step':<10} {rows_tiny:>6} rows (s) {rows_full:>6} rows (s)  ratio")
    for name in baseline:
        print(
            f"{name:<10} {baseline[name]:>13.3f} {result[name]:>13.3f} {result[name] / baseline[name]:>6.1f}x"
        )


if __name__ == "__main__":
    main()
