"""``python -m agelab train key=value ... [--config run.yaml]``: one run in this process (the work is
:func:`agelab.training.verb.train`); the run folder is its last line of output. The dashboard starts the
same command detached (``launchers.LocalLauncher``), its output already going to the run's log
(``--log-redirected``); started by hand, the command copies its output there itself.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, NoReturn, TextIO

import agelab
from agelab import atomic, run_status, runs
from agelab.config import (
    ConfigError,
    build_config,
    check_data,
    check_weights,
    describe_options,
    load_config_file,
    parse_overrides,
    resolve_data,
)
from agelab.processes import LOG_REDIRECTED
from agelab.training.errors import TrainingFailed
from agelab.training.resume import RESUME, RESUME_FLAG, as_local, resumable_run, resume_config
from agelab.training.verb import train


class _Tee:
    """Copies a stream into log.txt when the run was started by hand (not by the local launcher)."""

    def __init__(self, stream: TextIO, log: TextIO) -> None:
        self.stream, self.log = stream, log

    def write(self, text: str) -> int:
        try:
            self.log.write(text)
            self.log.flush()
        except (OSError, ValueError):
            pass  # a full disk must not turn every print into a crash; the console still shows it
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()
        try:
            self.log.flush()
        except (OSError, ValueError):
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agelab train",
        description="Train a model. Keys (key=value):\n"
        + describe_options()
        + f"\n\n{RESUME}=RUN (a run name or folder) continues a stopped, failed or lost run from its last"
        " checkpoint, with its own saved config.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    parser.add_argument("--config", help="a YAML or JSON file of key: value (overrides still apply on top)")
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)  # a queued run made by a launcher
    # With --run-dir: go on from its last checkpoint (the Resume button; agelab.training.resume).
    parser.add_argument(RESUME_FLAG, action="store_true", help=argparse.SUPPRESS)
    # Set by the local launcher, whose process writes straight into log.txt: copying it there again would
    # double every line.
    parser.add_argument(LOG_REDIRECTED, action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    resume = bool(args.resume and args.run_dir)
    try:
        asked = [item for item in args.overrides if item.split("=", 1)[0].strip() == RESUME]
        if asked:
            # train resume=RUN [keys that may change]: the run's own folder and saved config.
            run_dir = resumable_run(asked[-1].split("=", 1)[1].strip())
            rest = [item for item in args.overrides if item not in asked]
            config = resume_config(run_dir, parse_overrides(rest))
            atomic.write_json(run_dir / "config.json", config)
            as_local(run_dir)
            resume = True
        elif args.run_dir:
            run_dir = Path(args.run_dir)
            config = build_config(base=atomic.read_json(run_dir / "config.json", {}))
        else:
            base = load_config_file(args.config) if args.config else {}
            config = resolve_data(build_config(parse_overrides(args.overrides), base=base))
            run_dir = None
        check_data(config)
        check_weights(config)
    except ConfigError as err:
        print(f"agelab train: {err}", file=sys.stderr)
        return 2
    try:
        run_dir = run_dir or runs.create_run(config)
    except OSError as err:
        print(
            f"agelab train: cannot create a run folder under {runs.runs_dir()}: {err.strerror or err}",
            file=sys.stderr,
        )
        return 1
    log = None
    if not args.log_redirected:
        log = open(run_dir / "log.txt", "a", encoding="utf-8")
        sys.stdout, sys.stderr = _Tee(sys.stdout, log), _Tee(sys.stderr, log)
    try:
        train(config, run_dir, resume=resume)
        code = 0 if run_status.effective_status(run_dir).get("status") == "finished" else 3
    except TrainingFailed as err:
        print(f"agelab train: the run failed: {err}", file=sys.stderr)
        code = 1
    finally:
        if log is not None:
            sys.stdout, sys.stderr = sys.stdout.stream, sys.stderr.stream
            log.close()
    print(run_dir, flush=True)
    if code == 1 and started_as_command():
        end_process(code)
    return code


def started_as_command() -> bool:
    """Whether this process is ``python -m agelab ...`` (the dashboard's launch, a queued or hand-started
    run), as opposed to a program or a test that called :func:`cli` and goes on after it returns."""
    entry = Path(agelab.__file__).parent / "__main__.py"
    return bool(sys.argv) and Path(sys.argv[0]).resolve() == entry.resolve()


def end_process(code: int) -> NoReturn:
    """End this process now, its output flushed, without the interpreter's shutdown.

    After a run that failed inside tf.data (an input that did not decode), TensorFlow's input threads
    kept the interpreter from exiting, or aborted it (SIGABRT) on the way out: the status said failed,
    but the process lived on. Its status, log and run folder are all written by now.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
