"""``python -m agelab sweep``: a grid of runs (:mod:`agelab.sweeps`), or with ``search=random|asha``
a Ray Tune search (:mod:`agelab.tune`); ``--resume`` goes on with a sweep's queue, ``--stop`` cancels it,
``--wait`` follows it to its end and prints the comparison (:mod:`agelab.sweep_compare`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from agelab import atomic, sweep_compare, sweeps
from agelab.config import ConfigError, load_config_file
from agelab.launchers import LaunchError, RayLauncher, ray_address, ray_missing
from agelab.sweep_records import SweepError, read_sweep, sweeps_root


def wants_tune(argv: list[str]) -> bool:
    """Whether a sweep command line asks for Tune (``search=...``, or the driver inside a Ray job)."""
    return any(a.startswith("search=") or a == "--tune-driver" for a in argv)


def cli(argv: list[str]) -> int:
    if wants_tune(argv):  # search=random|asha: through Ray Tune (agelab.tune)
        return tune_cli(argv)
    parser = argparse.ArgumentParser(
        prog="python -m agelab sweep",
        description=(
            "Launch a grid of training runs: every combination of the listed values, e.g."
            " python -m agelab sweep model=baseline_cnn weights=none epochs=1,2 learning_rate=0.001,0.0003."
            " Values split on commas (or on | for bins' comma-separated edges)."
        ),
    )
    parser.add_argument("overrides", nargs="*", metavar="key=a,b")
    parser.add_argument("--config", help="a YAML or JSON file of key: value under the grid")
    parser.add_argument("--name", default="", help="the sweep's name (its runs are <name>-<n>)")
    parser.add_argument(
        "--max-concurrent",
        type=int,
        default=None,
        help="runs at once (default: 1 locally; on Ray no limit: Ray queues by each run's num_cpus/num_gpus)",
    )
    parser.add_argument("--ray", default=None, help="a Ray dashboard address (default: AGELAB_RAY_ADDRESS)")
    parser.add_argument(
        "--wait", action="store_true", help="stay until every run ended; print the comparison"
    )
    parser.add_argument("--resume", help="go on with an existing sweep folder's queue")
    parser.add_argument("--stop", metavar="SWEEP_DIR", help="cancel a sweep's queue and stop its runs")
    args = parser.parse_args(argv)
    if args.stop:
        try:
            print(f"{args.stop}: {sweeps.stop_sweep(Path(args.stop))}")
        except (FileNotFoundError, ValueError, OSError) as err:
            print(f"agelab sweep: {err}", file=sys.stderr)
            return 2
        return 0
    try:
        if args.resume:
            sweep_dir = Path(args.resume)
            read_sweep(sweep_dir)
        else:
            address = ray_address(args.ray)
            if address and (missing := ray_missing(address)):
                print(f"agelab sweep: {missing}", file=sys.stderr)
                return 2
            grid, fixed = sweeps.parse_grid(args.overrides)
            base = load_config_file(args.config) if args.config else None
            sweep_dir = sweeps.create_sweep(
                grid,
                fixed,
                name=args.name,
                base=base,
                ray_address=address,
                max_concurrent=args.max_concurrent,
            )
            sweep = read_sweep(sweep_dir)
            limit = sweep["max_concurrent"] or "no limit"
            print(
                f"sweep {sweep_dir}: {len(sweep['runs'])} runs on {sweep['backend']}"
                f" ({sweep['ray_address'] or 'this machine'}), at most {limit} at once",
                flush=True,
            )
    except (ConfigError, FileNotFoundError, SweepError) as err:
        print(f"agelab sweep: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk or a read-only runs folder
        print(f"agelab sweep: no sweep made: {atomic.why_not_written(sweeps_root(), err)}", file=sys.stderr)
        return 1
    try:
        sweep = sweeps.run_queue(sweep_dir, wait=args.wait, say=lambda text: print(text, flush=True))
    except (LaunchError, SweepError) as err:
        print(f"agelab sweep: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"agelab sweep: {atomic.why_not_written(sweep_dir / 'sweep.json', err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"agelab sweep: interrupted; stopping the sweep: {sweeps.stop_sweep(sweep_dir)}", file=sys.stderr
        )
        return 130
    if args.wait:
        print(sweep_compare.format_table(sweep_compare.compare(sweep)), flush=True)
    print(sweep_dir, flush=True)
    failed = [e for e in sweep["runs"] if e["state"] == "not_launched"]
    return 1 if failed else 0


def tune_cli(argv: list[str]) -> int:
    """``sweep search=random|asha ...`` (and ``--tune-driver``, the driver inside its Ray job)."""
    from agelab import tune

    parser = argparse.ArgumentParser(
        prog="python -m agelab sweep search=random|asha", description=tune.__doc__
    )
    parser.add_argument("overrides", nargs="*", metavar="key=a,b|low..high")
    parser.add_argument("--config", help="a YAML or JSON file of key: value under the search")
    parser.add_argument("--name", default="", help="the sweep's name (its runs are <name>-<n>)")
    parser.add_argument("--ray", default=None, help="a Ray dashboard address (default: AGELAB_RAY_ADDRESS)")
    parser.add_argument(
        "--wait", action="store_true", help="follow the search to its end; print the comparison"
    )
    parser.add_argument("--tune-driver", metavar="SWEEP_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    search = next((a.split("=", 1)[1] for a in args.overrides if a.startswith("search=")), "")
    if ray_missing(search or "a Ray Tune search"):
        print(f"agelab sweep: {tune.INSTALL.format(search=search or 'random')}", file=sys.stderr)
        return 2
    try:
        if args.tune_driver:
            sweep = tune.drive(Path(args.tune_driver))
            print(sweep_compare.format_table(sweep_compare.compare(sweep)), flush=True)
            return 1 if sweep.get("trials_failed") else 0
        address = ray_address(args.ray)
        base = load_config_file(args.config) if args.config else None
        sweep_dir = tune.create_search(args.overrides, args.name, base, address)
        options = read_sweep(sweep_dir)["search"]
        where = address or "a Ray started here"
        print(
            f"sweep {sweep_dir}: {options['search']} search, {options['samples']} trials on {where}",
            flush=True,
        )
        if not address:
            sweep = tune.drive(sweep_dir, say=lambda text: print(text, flush=True))
        else:
            job_id = tune.submit_driver(sweep_dir, address)
            print(f"Tune driver: Ray job {job_id}", flush=True)
            if not args.wait:
                print(sweep_dir, flush=True)
                return 0
            client = RayLauncher(address).client
            while (state := tune.job_state(client, job_id)) not in ("SUCCEEDED", "FAILED", "STOPPED"):
                time.sleep(2.0)
            if state != "SUCCEEDED":
                print(client.get_job_logs(job_id)[-3000:], file=sys.stderr)
                print(f"agelab sweep: the Tune driver job {job_id} ended {state}", file=sys.stderr)
                return 1
            sweep = read_sweep(sweep_dir)
    except (ConfigError, SweepError, LaunchError, FileNotFoundError) as err:
        print(f"agelab sweep: {err}", file=sys.stderr)
        return 2
    print(sweep_compare.format_table(sweep_compare.compare(sweep)), flush=True)
    print(sweep_dir, flush=True)
    return 1 if sweep.get("trials_failed") else 0
