"""What a Ray run costs against a local run of the same tiny recipe, in one process on one machine.

Starts its own Ray head on 127.0.0.1 (agelab.cluster: its own ports and temp dir, stopped at the end,
and only it), copies real UTKFace images into a temporary folder, and times launch -> finished for:
the run launched here (LocalLauncher), the first Ray run (the code package is zipped and uploaded),
and a second Ray run (the package cached on the head). Prints each wall time and the Ray / local
ratios. Other work on the machine moves these figures: run it on a quiet one, or compare ratios.

    .venv/bin/python bench/cluster_overhead.py [--images 120] [--epochs 1] [--repeat 1]
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

from agelab import cluster, launchers, runs  # noqa: E402
from agelab.paths import PROJECT_ROOT  # noqa: E402

RECIPE = {"model": "baseline_cnn", "weights": "none", "image_size": 64, "crop": "none", "max_images": 100}


def copy_images(dest: Path, count: int) -> Path:
    import shutil

    source = next(
        p
        for p in (PROJECT_ROOT / "data" / "UTKFace", PROJECT_ROOT.parent / "shared" / "data" / "utkface")
        if p.is_dir()
    )
    names = sorted(n for n in os.listdir(source) if n.endswith(".jpg.chip.jpg"))
    dest.mkdir(parents=True)
    for name in names[:: max(1, len(names) // count)][:count]:
        shutil.copy2(source / name, dest / name)
    return dest


def timed_run(launcher, config: dict, timeout: float = 1800) -> tuple[float, Path]:
    start = time.perf_counter()
    run_dir = launcher.submit(config)
    deadline = time.monotonic() + timeout
    while (state := launcher.status(run_dir).get("status")) in runs.ACTIVE:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{run_dir.name} still {state} after {timeout:.0f} s")
        time.sleep(0.25)
    wall = time.perf_counter() - start
    if state != "finished":
        raise RuntimeError(f"{run_dir.name} ended {state}: {runs.load_run(run_dir).status.get('error')}")
    return wall, run_dir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="local and warm Ray runs each, after the first")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="agelab-overhead-") as tmp:
        base = Path(tmp)
        os.environ["AGELAB_RUNS_DIR"] = str(base / "runs")
        os.environ["AGELAB_CACHE_DIR"] = str(base / "cache")
        config = {**RECIPE, "epochs": args.epochs, "data": str(copy_images(base / "utk", args.images))}
        temp_dir = Path(f"/tmp/ray-agelab-bench-{os.getpid()}")  # short: Ray's socket paths
        started = time.perf_counter()
        head = cluster.up(cluster.free_port(), temp_dir=temp_dir, root=base / "runs")
        head_s = time.perf_counter() - started
        try:
            local, ray = launchers.LocalLauncher(), launchers.RayLauncher(head["address"])
            # The first local run builds the index and split caches the later runs share.
            local_s = [timed_run(local, config)[0] for _ in range(args.repeat + 1)][1:]
            first_s, first_dir = timed_run(ray, config)
            warm_s = [timed_run(ray, config)[0] for _ in range(args.repeat)]
            start_gap = (
                runs.load_run(first_dir).status["started"] - runs.load_run(first_dir).status["created"]
            )
        finally:
            stopped = cluster.down(base / "runs")
    local_mean, warm_mean = statistics.mean(local_s), statistics.mean(warm_s)
    print(f"recipe: {config | {'data': f'{args.images} real UTKFace images'}}")
    print(
        f"ray head start (cluster up, until it takes jobs): {head_s:6.1f} s; stopped {stopped['stopped']} processes"
    )
    print(
        f"local run, launch to finished:                    {local_mean:6.1f} s  ({', '.join(f'{s:.1f}' for s in local_s)})"
    )
    print(
        f"ray run, first (code package uploaded):           {first_s:6.1f} s  (launch to start {start_gap:.1f} s)"
    )
    print(
        f"ray run, package cached:                          {warm_mean:6.1f} s  ({', '.join(f'{s:.1f}' for s in warm_s)})"
    )
    print(f"ratio ray / local: first {first_s / local_mean:.2f}x, cached {warm_mean / local_mean:.2f}x"
          f" (+{warm_mean - local_mean:.1f} s a run)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
