"""The ``train`` verb's work: :func:`train` runs one in this process, in its run folder, recording its
status from start to end (running, finished, stopped or failed with its reason). The command line
(``python -m agelab train``) is :mod:`agelab.commands.train`.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any, TextIO

from agelab import processes, run_status, runs
from agelab.config import build_config, resolve_data
from agelab.training import checkpoints
from agelab.training.cluster_watch import watch_head
from agelab.training.devices import configure_devices
from agelab.training.errors import RunStopped, TrainingFailed, failure_reason
from agelab.training.resume import ENDED_KEYS
from agelab.training.stop import StopRequest


def train(config: dict[str, Any], run_dir: Path | None = None, resume: bool = False) -> Path:
    """Train in this process; returns the run folder. Raises :class:`TrainingFailed` (after
    recording the traceback in ``status.json``) when the run crashes. ``resume``: go on from the last
    checkpoint in ``run_dir`` (:func:`agelab.training.resume.resumable_run` checked it can)."""
    # TensorFlow loads here, not for --help or a bad argument.
    from agelab.pipeline import remove_orphan_caches
    from agelab.training.run import Trainer

    config = resolve_data(build_config(base=config))
    run_dir = Path(run_dir) if run_dir else runs.create_run(config)
    checkpoint = checkpoints.latest(run_dir) if resume else None
    if resume and checkpoint is None:
        raise TrainingFailed(run_dir, f"run {run_dir.name} has no readable checkpoint to resume from")
    stopper = StopRequest(run_dir)
    stopper.install()
    head_watch = None
    try:
        status = runs.read_run_file(run_dir / "status.json", [])
        # A Ray job whose head dies stops itself and ends lost, rather than train on as an orphan.
        head_watch = watch_head(stopper, status)
        if head_watch is not None:
            head_watch.start()
        device, gpus = configure_devices(config, ray_job=status.get("launcher") == "ray")
        remove_orphan_caches()
        started = time.time()
        resumed = {}
        if checkpoint is not None:
            earlier = status.get("resumed") if isinstance(status.get("resumed"), list) else []
            resumed = {"resumed": [*earlier, {"at": started, "from_epoch": checkpoint.epoch}]}
        run_status.rewrite_status(
            run_dir,
            # What the run's earlier life left: its end, its error, the stop request it obeyed.
            ENDED_KEYS if checkpoint is not None else (),
            status="running",
            pid=os.getpid(),
            # What Stop checks before it signals this process (agelab.processes.own_process).
            process=processes.identity(os.getpid()),
            host=socket.gethostname(),
            started=status.get("started", started) if checkpoint is not None else started,
            device=device,
            heartbeat=started,
            **resumed,
        )
        print(f"run {run_dir} on {device}", flush=True)
        with run_status.Heartbeat(run_dir):
            Trainer(config, run_dir, stopper, gpus, checkpoint).run()
        final = "stopped" if stopper.requested else "finished"
        if final == "finished":
            checkpoints.remove(run_dir)  # it has its model now, and a finished run is not resumed
        _record_end(run_dir, stopper, final)
    except BaseException as err:
        if stopper.requested and isinstance(err, RunStopped | InterruptedError):
            _record_end(
                run_dir, stopper, "stopped", note="stopped before the first epoch ended; no model saved"
            )
            return run_dir
        reason = failure_reason(err, run_dir)
        trace = traceback.format_exc()
        # The status first: on a full disk the log (this process's stdout) cannot take the message.
        run_status.write_status(run_dir, status="failed", ended=time.time(), error=reason or trace)
        _say(reason or trace, sys.stderr)
        if isinstance(err, KeyboardInterrupt):
            raise
        raise TrainingFailed(run_dir, reason or f"{type(err).__name__}: {err}") from err
    finally:
        if head_watch is not None:
            head_watch.stop()
        stopper.uninstall()
    return run_dir


def _record_end(run_dir: Path, stopper: StopRequest, final: str, note: str | None = None) -> None:
    """Write and say how the run ended: ``final`` (finished or stopped), or ``lost``, with the
    sentence naming its Ray head, when the head stopped answering (agelab.training.cluster_watch)."""
    extra = {"note": note} if note else {}
    if stopper.lost:
        run_status.write_status(run_dir, status="lost", ended=time.time(), error=stopper.lost, **extra)
        _say(f"run lost: {stopper.lost}" + (f" ({note})" if note else ""))
    else:
        run_status.write_status(run_dir, status=final, ended=time.time(), **extra)
        _say(f"run {final}" + (f": {note}" if note else ""))


def _say(text: str, stream: TextIO | None = None) -> None:
    """Print, but never fail: the log may sit on a full disk."""
    try:
        print(text, file=stream or sys.stdout, flush=True)
    except (OSError, ValueError):
        pass
