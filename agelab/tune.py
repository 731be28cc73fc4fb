"""Sweeps beyond grids, through Ray Tune: ``python -m agelab sweep search=random|asha samples=N
[grace_period=E] key=a,b other=low..high ...``.

``key=a,b`` is a choice among the values; ``key=low..high`` a range (log-uniform for learning rates,
whole numbers for integer keys, uniform otherwise). ``random`` draws ``samples`` configs; ``asha``
draws as many and stops the worse trials early (ASHA), on each run's validation loss after each
epoch, the first ``grace_period`` epochs always run. Each trial is a normal agelab run: Tune's trial
starts ``python -m agelab train --run-dir`` on its node, reports each epoch's row of the run's
``history.csv``, and stops the run as Stop does (SIGTERM: it saves and is marked stopped, with a note
saying ASHA stopped it). The trials are the sweep's runs in ``sweep.json``, so the runs table and
the Train page's sweep comparison show them.

With a Ray address the Tune driver is itself a Ray job on the cluster (the sweep verb returns, or
follows it with ``--wait``); without one Tune runs here on a Ray started for it. Without Ray
installed ``search=`` is refused in one sentence; the grid (:mod:`agelab.sweeps`) needs no Ray.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from agelab import runs
from agelab.config import OPTIONS, ConfigError, load_config_file
from agelab.paths import PROJECT_ROOT
from agelab.sweeps import compare, create_sweep, format_table, parse_grid, read_sweep, update_sweep

SEARCHES = ("random", "asha")
SEARCH_KEYS = ("search", "samples", "grace_period")
RANGE = re.compile(r"^\s*([-+0-9.eE]+)\s*\.\.\s*([-+0-9.eE]+)\s*$")
LOG_RANGE_KEYS = {"learning_rate", "fine_tune_learning_rate", "weight_decay", "label_smoothing"}
METRIC = "val_loss"
STOP_GRACE_S = 120
INSTALL = (
    "search={search} runs through Ray Tune, which is not installed here: install it with"
    " `.venv/bin/pip install -r requirements-cluster.txt`, or leave out search= for a grid of runs"
)


def wanted(argv: list[str]) -> bool:
    """Whether a sweep command line asks for Tune (``search=...``, or the driver inside a Ray job)."""
    return any(a.startswith("search=") or a == "--tune-driver" for a in argv)


def split_search(items: list[str]) -> tuple[dict[str, Any], list[str], dict[str, tuple[str, str]]]:
    """``search=``, ``samples=``, ``grace_period=`` apart from the run keys, and ``key=low..high`` ranges
    apart from the grid: (search options, the remaining key=value items, {key: (low, high)})."""
    options: dict[str, Any] = {"search": "random", "samples": 4, "grace_period": 1}
    rest, ranges = [], {}
    for item in items:
        key, _, value = item.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if key in SEARCH_KEYS:
            options[key] = value.strip()
        elif (match := RANGE.match(value)) and key in OPTIONS:
            ranges[key] = (match[1], match[2])
        else:
            rest.append(item)
    if options["search"] not in SEARCHES:
        raise ConfigError(f"bad value search={options['search']!r}: choose {' or '.join(SEARCHES)}")
    for key in ("samples", "grace_period"):
        try:
            options[key] = int(options[key])
        except ValueError:
            options[key] = 0
        if options[key] < 1:
            raise ConfigError(f"bad value {key}={options[key]!r}: give a whole number, 1 or more")
    return options, rest, ranges


def search_space(grid: dict[str, list[str]], ranges: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """Tune's ``param_space``: a choice for each listed key, a distribution for each range."""
    from ray import tune

    space: dict[str, Any] = {key: tune.choice(values) for key, values in grid.items()}
    for key, (low, high) in ranges.items():
        if OPTIONS[key].kind == "int":
            space[key] = tune.randint(int(float(low)), int(float(high)) + 1)
        elif key in LOG_RANGE_KEYS and float(low) > 0:
            space[key] = tune.loguniform(float(low), float(high))
        else:
            space[key] = tune.uniform(float(low), float(high))
    return space


def create_search(
    items: list[str], name: str = "", base: dict[str, Any] | None = None, ray_address: str = ""
) -> Path:
    """Validate the keys (every listed value and both ends of each range) and write the sweep's
    ``sweep.json`` with its search and no runs yet: the trials add themselves."""
    options, rest, ranges = split_search(items)
    grid, fixed = parse_grid(rest)
    checked = {**grid, **{key: list(ends) for key, ends in ranges.items()}}
    sweep_dir = create_sweep(checked, fixed, name=name, base=base, ray_address=ray_address, max_concurrent=0)
    first = read_sweep(sweep_dir)["runs"][0]["config"]
    options.update(max_epochs=int(first["epochs"]), num_cpus=first["num_cpus"], num_gpus=first["num_gpus"])

    def as_search(sweep: dict[str, Any]) -> None:
        # The grid lists each range by its ends, so the comparison table has a column for it.
        sweep.update(search=options, ranges=ranges, base=base or {})
        sweep["runs"] = []

    update_sweep(sweep_dir, as_search)
    return sweep_dir


# ---------------------------------------------------------------- one trial: one agelab run


def _die_with_parent() -> None:
    # The run gets SIGTERM (Stop's graceful stop) if the trial's process is killed before it.
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def run_trial(params: dict[str, Any], sweep_dir: str) -> None:
    """Tune's trainable: make the run, train it in ``python -m agelab train``, report each epoch."""
    from ray import tune

    from agelab.config import build_config, checked_config

    sweep = read_sweep(Path(sweep_dir))
    config = checked_config(build_config({**sweep["fixed"], **params}, base=sweep.get("base") or None))
    config["name"] = sweep["name"].rsplit("-", 1)[0]
    run_dir = runs.create_run(config, Path(sweep["runs_dir"]))
    trial = tune.get_context().get_trial_name()
    runs.write_status(run_dir, launcher="tune", sweep=sweep["name"], trial=trial)

    def add(s: dict[str, Any]) -> None:
        overrides = {key: config[key] for key in params}
        s["runs"].append(
            {
                "index": len(s["runs"]) + 1,
                "state": "launched",
                "run": str(run_dir),
                "overrides": overrides,
                "config": config,
            }
        )

    update_sweep(Path(sweep_dir), add)
    with open(run_dir / "log.txt", "ab") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "agelab", "train", "--run-dir", str(run_dir), "--log-redirected"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=PROJECT_ROOT,
            preexec_fn=_die_with_parent,
        )  # fmt: skip
    runs.write_status(run_dir, pid=child.pid)
    reported = 0
    try:
        while True:
            ended = child.poll() is not None
            history = runs.load_run(run_dir).history
            rows = history[history[METRIC].notna()] if METRIC in history else history.iloc[0:0]
            for _, row in rows.iloc[reported:].iterrows():
                reported += 1
                tune.report({METRIC: float(row[METRIC]), "epoch": reported, "run": run_dir.name})
            if ended:
                break
            time.sleep(1.0)
    finally:
        if child.poll() is None:  # Tune stopped the trial (ASHA, or the sweep's Stop): stop the run
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                child.kill()
    state = runs.load_run(run_dir).state
    if state != "finished":
        raise RuntimeError(f"run {run_dir.name} ended {state}: {runs.load_run(run_dir).status.get('error')}")


# ---------------------------------------------------------------- the driver


def drive(sweep_dir: Path, say=print) -> dict[str, Any]:
    """Run the search (here, on the Ray this process is connected to or starts); return the sweep."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from agelab.cluster import LOOPBACK_ENV

    sweep_dir = Path(sweep_dir).resolve()
    sweep = read_sweep(sweep_dir)
    search = sweep["search"]
    started_here = not ray.is_initialized() and "RAY_ADDRESS" not in os.environ
    if started_here:  # a Ray of its own on 127.0.0.1, never a head someone else started on this machine
        ray.init(
            address="local",
            include_dashboard=False,
            runtime_env={"env_vars": {**LOOPBACK_ENV, "PYTHONPATH": str(PROJECT_ROOT)}},
        )
    elif not ray.is_initialized():
        ray.init()  # inside the driver's Ray job: its cluster, and the job's runtime environment
    scheduler = None
    if search["search"] == "asha":
        scheduler = ASHAScheduler(
            time_attr="training_iteration",
            max_t=max(search["max_epochs"], search["grace_period"]),
            grace_period=search["grace_period"],
            reduction_factor=2,
        )

    class SweepStop(tune.Stopper):
        """The sweep's Stop (``stop_requested`` in ``sweep.json``) ends every trial."""

        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            return self.stop_all()

        def stop_all(self) -> bool:
            return bool(read_sweep(sweep_dir).get("stop_requested"))

    resources = {"cpu": float(search["num_cpus"]), "gpu": float(search["num_gpus"])}
    ranges = {key: tuple(ends) for key, ends in sweep.get("ranges", {}).items()}
    choices = {key: values for key, values in sweep["grid"].items() if key not in ranges}
    update_sweep(sweep_dir, lambda s: s.update(status="running", heartbeat=runs.now()))
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(run_trial, sweep_dir=str(sweep_dir)), resources),
        param_space=search_space(choices, ranges),
        tune_config=tune.TuneConfig(
            metric=METRIC, mode="min", num_samples=search["samples"], scheduler=scheduler,
            max_concurrent_trials=sweep.get("max_concurrent") or None,
        ),
        run_config=tune.RunConfig(
            name="tune", storage_path=str(sweep_dir), stop=SweepStop(), verbose=0,
            failure_config=tune.FailureConfig(max_failures=0),
        ),
    )  # fmt: skip
    try:
        results = tuner.fit()
    finally:
        if started_here:
            ray.shutdown()
    note_early_stops(sweep_dir, results, search)
    sweep = update_sweep(sweep_dir, lambda s: s.update(status="launched", ended=runs.now()))
    say(f"search ended: {len(sweep['runs'])} trials, {results.num_errors} failed")
    return sweep


def note_early_stops(sweep_dir: Path, results: Any, search: dict[str, Any]) -> None:
    """Each run that Tune stopped before its last epoch says so in its status."""
    stopped_sweep = bool(read_sweep(sweep_dir).get("stop_requested"))
    for result in results:
        name = (result.metrics or {}).get("run")
        if not name:
            continue
        run_dir = Path(read_sweep(sweep_dir)["runs_dir"]) / name
        deadline = time.monotonic() + STOP_GRACE_S
        while runs.load_run(run_dir).state in runs.ACTIVE and time.monotonic() < deadline:
            time.sleep(1.0)
        epochs = int(result.metrics.get("epoch", 0))
        if runs.load_run(run_dir).state == "stopped" and not stopped_sweep and epochs < search["max_epochs"]:
            why = f"stopped early by ASHA after epoch {epochs} (val_loss {result.metrics[METRIC]:.4g})"
            runs.write_status(run_dir, note=why, early_stopped=True)


def submit_driver(sweep_dir: Path, address: str) -> str:
    """The driver as a Ray job on the cluster (it reserves no CPU: the trials do); its job id."""
    from agelab.cluster import job_entrypoint, job_runtime_env
    from agelab.launchers import RayLauncher

    sweep = read_sweep(sweep_dir)
    job_id = RayLauncher(address).client.submit_job(
        entrypoint=job_entrypoint("sweep", "--tune-driver", str(Path(sweep_dir).resolve())),
        submission_id=f"agelab-{sweep['name']}-tune-{int(time.time())}",
        runtime_env=job_runtime_env(address, Path(sweep["runs_dir"])),
        entrypoint_num_cpus=0,
        metadata={"agelab_sweep": sweep["name"]},
    )
    update_sweep(sweep_dir, lambda s: s.update(driver_job=job_id))
    return job_id


def job_state(client: Any, job_id: str) -> str:
    status = client.get_job_status(job_id)
    return str(getattr(status, "value", status))


def cli(argv: list[str]) -> int:
    from agelab.launchers import LaunchError, RayLauncher, ray_address, ray_missing
    from agelab.sweeps import SweepError

    parser = argparse.ArgumentParser(prog="python -m agelab sweep search=random|asha", description=__doc__)
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
        print(f"agelab sweep: {INSTALL.format(search=search or 'random')}", file=sys.stderr)
        return 2
    try:
        if args.tune_driver:
            sweep = drive(Path(args.tune_driver))
            print(format_table(compare(sweep)), flush=True)
            return 0
        address = ray_address(args.ray)
        base = load_config_file(args.config) if args.config else None
        sweep_dir = create_search(args.overrides, args.name, base, address)
        options = read_sweep(sweep_dir)["search"]
        where = address or "a Ray started here"
        print(
            f"sweep {sweep_dir}: {options['search']} search, {options['samples']} trials on {where}",
            flush=True,
        )
        if not address:
            sweep = drive(sweep_dir, say=lambda text: print(text, flush=True))
        else:
            job_id = submit_driver(sweep_dir, address)
            print(f"Tune driver: Ray job {job_id}", flush=True)
            if not args.wait:
                print(sweep_dir, flush=True)
                return 0
            client = RayLauncher(address).client
            while (state := job_state(client, job_id)) not in ("SUCCEEDED", "FAILED", "STOPPED"):
                time.sleep(2.0)
            if state != "SUCCEEDED":
                print(client.get_job_logs(job_id)[-3000:], file=sys.stderr)
                print(f"agelab sweep: the Tune driver job {job_id} ended {state}", file=sys.stderr)
                return 1
            sweep = read_sweep(sweep_dir)
    except (ConfigError, SweepError, LaunchError, FileNotFoundError) as err:
        print(f"agelab sweep: {err}", file=sys.stderr)
        return 2
    print(format_table(compare(sweep)), flush=True)
    print(sweep_dir, flush=True)
    return 0
