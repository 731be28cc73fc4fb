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

With a Ray address the Tune driver is itself a Ray job on the cluster (the sweep verb,
:mod:`agelab.commands.sweep`, returns, or follows it with ``--wait``); without one Tune runs here on
a Ray started for it. Without Ray installed ``search=`` is refused in one sentence; the grid
(:mod:`agelab.sweeps`) needs no Ray.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from agelab import runs
from agelab.config import OPTIONS, PRETRAINED_MODELS, ConfigError
from agelab.paths import PROJECT_ROOT
from agelab.sweep_records import read_sweep, update_sweep
from agelab.sweeps import create_sweep, parse_grid

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
    options.update(max_epochs=planned_epochs(first), num_cpus=first["num_cpus"], num_gpus=first["num_gpus"])

    def as_search(sweep: dict[str, Any]) -> None:
        # The grid lists each range by its ends, so the comparison table has a column for it.
        sweep.update(search=options, ranges=ranges, base=base or {})
        sweep["runs"] = []

    update_sweep(sweep_dir, as_search)
    return sweep_dir


# ---------------------------------------------------------------- one trial: one agelab run


def planned_epochs(config: dict[str, Any]) -> int:
    """The epochs a run trains when nothing stops it: its first stage, and fine-tuning when it has one
    (a backbone model with ``fine_tune_layers``)."""
    fine_tune = config["model"] in PRETRAINED_MODELS and config.get("fine_tune_layers")
    return int(config["epochs"]) + (int(config.get("fine_tune_epochs") or 0) if fine_tune else 0)


def make_trial_class():
    """Tune's trainable for a trial (a class: its ``cleanup`` runs before Ray ends the trial's
    process, which kills what that process started, so the run is stopped gracefully there)."""
    from ray import tune

    from agelab.config import build_config, checked_config

    class AgelabTrial(tune.Trainable):
        """One agelab run: ``python -m agelab train --run-dir`` in a child process; each ``step`` is one
        epoch (its row of ``history.csv``). Between steps the run is paused (SIGSTOP) while Tune
        decides, so a trial ASHA stops trains no further than its rung; the last epoch is reported
        when the run has ended (ASHA stops every trial there)."""

        def setup(self, config: dict[str, Any], sweep_dir: str = "") -> None:
            sweep = read_sweep(Path(sweep_dir))
            params = dict(config)
            run_config = checked_config(
                build_config({**sweep["fixed"], **params}, base=sweep.get("base") or None)
            )
            run_config["name"] = sweep["name"].rsplit("-", 1)[0]
            self.run_dir = runs.create_run(run_config, Path(sweep["runs_dir"]))
            runs.write_status(self.run_dir, launcher="tune", sweep=sweep["name"], trial=self.trial_name)
            entry = {
                "state": "launched", "run": str(self.run_dir), "config": run_config,
                "overrides": {key: run_config[key] for key in params},
            }  # fmt: skip
            update_sweep(Path(sweep_dir), lambda s: s["runs"].append({"index": len(s["runs"]) + 1, **entry}))
            with open(self.run_dir / "log.txt", "ab") as log:
                self.child = subprocess.Popen(
                    [sys.executable, "-m", "agelab", "train", "--run-dir", str(self.run_dir), "--log-redirected"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=PROJECT_ROOT,
                )  # fmt: skip
            runs.write_status(self.run_dir, pid=self.child.pid)
            self.last = planned_epochs(run_config)
            self.reported = 0

        def step(self) -> dict[str, Any]:
            self.child.send_signal(signal.SIGCONT)
            while True:
                ended = self.child.poll() is not None
                history = runs.load_run(self.run_dir).history
                rows = history[history[METRIC].notna()] if METRIC in history else history.iloc[0:0]
                if len(rows) > self.reported and (ended or self.reported + 1 < self.last):
                    break
                if ended:
                    run = runs.load_run(self.run_dir)
                    if run.state != "finished":
                        raise RuntimeError(f"run {run.name} ended {run.state}: {run.status.get('error')}")
                    return {
                        METRIC: float("nan"),
                        "epoch": self.reported,
                        "run": self.run_dir.name,
                        "done": True,
                    }
                time.sleep(0.5)
            if not ended:
                self.child.send_signal(signal.SIGSTOP)
            self.reported += 1
            row = rows.iloc[self.reported - 1]
            result = {METRIC: float(row[METRIC]), "epoch": self.reported, "run": self.run_dir.name}
            # The run has ended and this was its last row: the trial is complete.
            return {**result, "done": True} if ended and self.reported == len(rows) else result

        def save_checkpoint(self, checkpoint_dir: str) -> dict[str, Any]:
            # The run saves its own model and history in its folder; Tune keeps where that is.
            return {"run": str(self.run_dir), "epoch": self.reported}

        def load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
            raise RuntimeError("a trial is not restored by Tune: the run's folder holds its state")

        def cleanup(self) -> None:
            if self.child.poll() is None:  # Tune stopped the trial (ASHA, or the sweep's Stop)
                self.child.send_signal(signal.SIGTERM)  # Stop's graceful stop: it saves, marked stopped
                self.child.send_signal(signal.SIGCONT)
                try:
                    self.child.wait(STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    self.child.kill()

    return AgelabTrial


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
        tune.with_resources(tune.with_parameters(make_trial_class(), sweep_dir=str(sweep_dir)), resources),
        param_space=search_space(choices, ranges),
        tune_config=tune.TuneConfig(
            metric=METRIC, mode="min", num_samples=search["samples"], scheduler=scheduler,
            max_concurrent_trials=sweep.get("max_concurrent") or None,
        ),
        run_config=tune.RunConfig(
            name="tune", storage_path=str(sweep_dir), stop=SweepStop(), verbose=0,
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False, checkpoint_frequency=0),
            failure_config=tune.FailureConfig(max_failures=0),
        ),
    )  # fmt: skip
    try:
        results = tuner.fit()
    finally:
        if started_here:
            ray.shutdown()
    note_early_stops(sweep_dir, results, search)
    failed = results.num_errors
    sweep = update_sweep(
        sweep_dir, lambda s: s.update(status="launched", ended=runs.now(), trials_failed=failed)
    )
    for entry in sweep["runs"]:
        run = runs.load_run(entry["run"])
        say(f"{run.name}: {run.state}, {len(run.history)} epochs {run.status.get('note') or ''}".rstrip())
    say(f"search ended: {len(sweep['runs'])} trials, {failed} failed")
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
