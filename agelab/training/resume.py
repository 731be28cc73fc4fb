"""Resuming a run: ``python -m agelab train resume=RUN`` (a run name or folder), or the Train page's
Resume button, continues a stopped, failed or lost run from its last checkpoint, in its own folder and
with its own saved config. Nothing here imports TensorFlow: the page checks and launches from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agelab import processes, run_status, runs
from agelab.config import ConfigError, build_config
from agelab.paths import runs_dir
from agelab.training import checkpoints

# The command-line key that names the run to resume (not a config key: a run's config never holds it).
RESUME = "resume"
# What the Resume button's process gets with --run-dir: go on from the folder's last checkpoint.
RESUME_FLAG = "--resume"
# What a resumed run may change: where and how fast it runs, never what it learns.
RESUME_MAY_CHANGE = ("keep_checkpoints", "threads", "gpus", "gpu_memory_mb", "num_cpus", "num_gpus")
# What a run's earlier life left in status.json, dropped when it goes on.
ENDED_KEYS = ("ended", "error", "dead", "killed", "note", "stop_requested")
# A resumed run runs on this machine: its earlier Ray job is over, and must not speak for it.
RAY_KEYS = ("job_id", "ray_status", "ray_address", "remote_only")


def find_run_dir(target: str) -> Path:
    """The run folder ``target`` names: a folder, or a name under the runs folder."""
    path = Path(target).expanduser()
    if not (path / "status.json").exists():
        path = runs_dir() / target
    if not (path / "status.json").exists():
        raise ConfigError(
            f"bad value resume={target!r}: no such run in {runs_dir()}; give a run name"
            " (`python -m agelab runs` lists them) or a run folder"
        )
    return path


def resumable_run(target: str) -> Path:
    """The run folder of ``target`` when it can be resumed; ConfigError saying why not otherwise."""
    run_dir = find_run_dir(target)
    run = runs.load_run(run_dir)
    name = run.name
    if run.state in run_status.ACTIVE:
        raise ConfigError(f"run {name} is still {run.state}; stop it before resuming it")
    if run.state == "finished":
        raise ConfigError(
            f"run {name} finished: there is nothing to resume; to train it again, launch"
            f" `python -m agelab train --config {run_dir / 'config.json'}`"
        )
    if run.state not in run_status.RESUMABLE:
        raise ConfigError(f"run {name} is {run.state}: {run.status.get('error', '')}".rstrip(": "))
    if not checkpoints.saved(run_dir):
        raise ConfigError(
            f"run {name} has no checkpoint to resume from: it ended before its first epoch did, or it ran"
            " with keep_checkpoints=0 (or before runs kept checkpoints); launch it again instead"
        )
    return run_dir


def resume_config(run_dir: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """The run's own saved config, with only the keys of ``RESUME_MAY_CHANGE`` changed by ``overrides``;
    ConfigError naming any other key that would change."""
    saved = build_config(base=runs.read_run_file(run_dir / "config.json", []))
    asked = build_config(overrides, base=saved)
    changed = [key for key in overrides if asked[key] != saved[key] and key not in RESUME_MAY_CHANGE]
    if changed:
        key = changed[0]
        raise ConfigError(
            f"bad key {key}={overrides[key]!r} with resume: a resumed run goes on with its own saved config"
            f" ({key}={saved[key]!r}); only {', '.join(RESUME_MAY_CHANGE)} may change. Launch a new run"
            f" to train with {key}={overrides[key]}"
        )
    return asked


def as_local(run_dir: Path) -> None:
    """Record that the run now goes on on this machine, so its earlier Ray job's end is not read as its own."""
    run_status.rewrite_status(run_dir, RAY_KEYS, launcher="local")


def launch_resume(run_dir: Path, env: dict[str, str] | None = None) -> int:
    """Resume ``run_dir`` as a detached ``python -m agelab train resume=...`` on this machine (the Train
    page's Resume button); its pid. ConfigError when it cannot be resumed."""
    from agelab.training.devices import visible_gpus_env

    run_dir = resumable_run(str(run_dir))
    config = resume_config(run_dir, {})
    as_local(run_dir)
    launch_env = {"TF_CPP_MIN_LOG_LEVEL": "2", **visible_gpus_env(config), **(env or {})}
    # --run-dir with --resume: the checks are done here, since the run reads as queued from now on.
    args = ["train", "--run-dir", str(run_dir), RESUME_FLAG, processes.LOG_REDIRECTED]
    pid = processes.spawn(args, run_dir / "log.txt", launch_env)
    # Queued until the process says it runs; a fresh heartbeat, or the old one would read as long dead.
    run_status.rewrite_status(
        run_dir,
        ("ended", "error", "dead", "stop_requested"),
        status="queued",
        pid=pid,
        process=processes.identity(pid),
        heartbeat=run_status.now(),
    )
    return pid
