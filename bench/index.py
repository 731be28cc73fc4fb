"""Index build and cached reload times on a UTKFace folder, and the Dataset page render time.

Baseline: the cold build (list, parse and hash every file) measured in the same run.
usage: python bench/index.py [--data DIR] [--repeat N]
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

from agelab.data import load_index  # noqa: E402
from agelab.paths import PROJECT_ROOT, data_dir  # noqa: E402


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(data_dir()))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        os.environ["AGELAB_CACHE_DIR"] = cache
        cold = timed(lambda: load_index(args.data, use_cache=False), args.repeat)
        index = load_index(args.data)
        warm = timed(lambda: load_index(args.data), args.repeat)

        from streamlit.testing.v1 import AppTest

        os.environ["AGELAB_DATA"] = args.data
        app = AppTest.from_file(str(PROJECT_ROOT / "pages" / "dataset.py"), default_timeout=300)
        first = timed(app.run, 1)[0]
        page = timed(app.run, args.repeat)

    n = len(index.frame) + len(index.malformed)
    print(f"folder: {args.data} ({n} files), {os.cpu_count()} CPUs")
    print(
        f"index build, cold (baseline):  {statistics.median(cold):6.2f} s  ({n / statistics.median(cold):,.0f} files/s)"
    )
    print(
        f"index reload from cache:       {statistics.median(warm):6.3f} s  "
        f"({statistics.median(cold) / statistics.median(warm):.0f}x faster than the cold build)"
    )
    print(f"Dataset page, first render:    {first:6.2f} s  (loads the cached index into st.cache_data)")
    print(f"Dataset page, later renders:   {statistics.median(page):6.2f} s  (median of {args.repeat})")


if __name__ == "__main__":
    main()
