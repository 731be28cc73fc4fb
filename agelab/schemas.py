"""What each file agelab reads back must hold, checked as it is read: a run's ``status.json``,
``progress.json`` and ``metrics.json``, a sweep's ``sweep.json``, a saved evaluation's summary, a
``marks.csv``, and a model's sidecar.

These files are written by agelab, but also by older versions, by hand and by accident. A field of
the wrong type (``"heartbeat": "abc"``, ``"pid": -1``, ``"image_size": "abc"``) is reported in one
sentence naming the file and the key, and left out, so the reader goes on with what is sound: the
run or sweep is listed as damaged, the model is refused with the reason. One bad file never takes
a page or a listing down.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

# A check takes a value and says what is wrong with it, or "" when it is sound.
Check = Callable[[Any], str]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def number(value: Any) -> str:
    return "" if _is_number(value) else "not a number"


def optional_number(value: Any) -> str:
    return "" if value is None or _is_number(value) else "not a number"


def count(value: Any) -> str:
    return "" if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else "not a count"


def process_id(value: Any) -> str:
    ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    return "" if ok else "not a process id (a positive whole number)"


def text(value: Any) -> str:
    return "" if isinstance(value, str) else "not text"


def optional_text(value: Any) -> str:
    return "" if value is None or isinstance(value, str) else "not text"


def flag(value: Any) -> str:
    return "" if isinstance(value, bool) else "not true or false"


def mapping(value: Any) -> str:
    return "" if isinstance(value, dict) else "not a mapping of keys"


def optional_mapping(value: Any) -> str:
    return "" if value is None or isinstance(value, dict) else "not a mapping of keys"


def one_of(*choices: str) -> Check:
    def check(value: Any) -> str:
        return "" if value in choices else f"not one of {', '.join(choices)}"

    return check


def curve(value: Any) -> str:
    """A list of ``[step, loss]`` pairs (the progress file's batch-loss curve)."""
    ok = isinstance(value, list) and all(
        isinstance(p, list | tuple) and len(p) == 2 and all(v is None or _is_number(v) for v in p)
        for p in value
    )
    return "" if ok else "not a list of [batch, loss] pairs"


def shown(value: Any) -> str:
    """A value as a message quotes it: short."""
    text_ = json.dumps(value, default=str)
    return text_ if len(text_) <= 40 else text_[:37] + "..."


def check_fields(
    data: dict[str, Any], fields: dict[str, Check], file: str, problems: list[str]
) -> dict[str, Any]:
    """``data`` without the fields that fail their check; each failure adds a sentence to ``problems``
    naming ``file``, the key and its value. Keys not in ``fields`` pass as they are."""
    sound = dict(data)
    for key, check in fields.items():
        if key in sound:
            wrong = check(sound[key])
            if wrong:
                problems.append(f"{file}: {key} is {shown(sound.pop(key))}, {wrong}")
    return sound


# ---------------------------------------------------------------- run files

# "lost" is written by a run that ended itself because its Ray head stopped answering
# (agelab.training.cluster_watch); otherwise it is only read, for a run whose process died.
RUN_STATES = ("queued", "running", "finished", "failed", "stopped", "lost")
TIME_KEYS = ("created", "started", "ended", "heartbeat", "stop_requested")
STATUS_FIELDS: dict[str, Check] = {
    "status": one_of(*RUN_STATES),
    "pid": process_id,
    "host": text,
    **{key: number for key in TIME_KEYS},
    "process": optional_mapping,
    **{key: optional_text for key in ("error", "note", "device", "launcher", "sweep", "job_id")},
    **{key: optional_text for key in ("ray_address", "ray_status")},
    **{key: flag for key in ("killed", "dead", "remote_only")},
}
PROGRESS_FIELDS: dict[str, Check] = {
    "stage": text,
    "eta_s": optional_number,
    **{
        key: optional_number
        for key in ("epoch", "epochs_total", "batch", "steps", "steps_done", "steps_total")
    },
    "curve": curve,
}


def metrics_fields(metrics: dict[str, Any]) -> dict[str, Check]:
    """Every ``test_*`` metric is a number (NaN included: a diverged run is reported as such) or null."""

    def metric(value: Any) -> str:
        ok = value is None or (isinstance(value, int | float) and not isinstance(value, bool))
        return "" if ok else "not a number"

    return {key: metric for key in metrics if key.startswith("test_") or key == "epochs_completed"}


def read_mapping(path: Path, problems: list[str]) -> dict[str, Any]:
    """A JSON file holding a mapping; ``{}`` when missing. A file that cannot be read, or that holds
    something other than a mapping, adds a one-sentence reason to ``problems``."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        why = err.strerror if isinstance(err, OSError) else "not valid JSON"
        problems.append(f"{Path(path).name} cannot be read ({why or err})")
        return {}
    if not isinstance(value, dict):
        problems.append(
            f"{Path(path).name} holds {type(value).__name__} {str(value)[:40]}, not a mapping of keys"
        )
        return {}
    return value


def read_status(run_dir: Path, problems: list[str]) -> dict[str, Any]:
    """A run's ``status.json``, each field of the right type (a wrong one is left out and reported)."""
    return check_fields(
        read_mapping(Path(run_dir) / "status.json", problems), STATUS_FIELDS, "status.json", problems
    )


def read_progress(run_dir: Path, problems: list[str]) -> dict[str, Any]:
    """A run's ``progress.json`` (rewritten every second), each field of the right type."""
    return check_fields(
        read_mapping(Path(run_dir) / "progress.json", []), PROGRESS_FIELDS, "progress.json", problems
    )


def read_metrics(run_dir: Path, problems: list[str]) -> dict[str, Any]:
    metrics = read_mapping(Path(run_dir) / "metrics.json", problems)
    return check_fields(metrics, metrics_fields(metrics), "metrics.json", problems)


# ---------------------------------------------------------------- sweeps

SWEEP_FIELDS: dict[str, Check] = {
    "name": text,
    "created": number,
    "status": text,
    "backend": one_of("local", "ray"),
    "ray_address": optional_text,
    "max_concurrent": lambda v: (
        "" if v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0) else "not a count"
    ),
    "runs_dir": text,
    "grid": mapping,
    "fixed": mapping,
    "runs": lambda v: "" if isinstance(v, list) else "not a list of runs",
    "stop_requested": number,
    "heartbeat": number,
    "ended": number,
    "scheduler": optional_mapping,
}
SWEEP_ENTRY_FIELDS: dict[str, Check] = {
    "index": count,
    "state": one_of("pending", "launched", "cancelled", "not_launched"),
    "run": optional_text,
    "overrides": mapping,
    "config": mapping,
}
# What a sweep cannot be read without (the rest has defaults).
SWEEP_REQUIRED = ("name", "runs_dir", "runs")


def sweep_problems(sweep: Any, file: str = "sweep.json") -> list[str]:
    """What is wrong with a sweep's contents: each a sentence naming the key; empty when sound."""
    if not isinstance(sweep, dict):
        return [f"{file} holds {type(sweep).__name__}, not a mapping of keys"]
    problems: list[str] = []
    sound = check_fields(sweep, SWEEP_FIELDS, file, problems)
    problems += [f"{file} has no {key}" for key in SWEEP_REQUIRED if key not in sound and key not in sweep]
    for i, entry in enumerate(sound.get("runs") or []):
        where = f"{file}: run {i + 1}"
        if not isinstance(entry, dict):
            problems.append(f"{where} is {shown(entry)}, not a mapping of keys")
            continue
        missing = [key for key in SWEEP_ENTRY_FIELDS if key not in entry and key != "run"]
        if missing:
            problems.append(f"{where} has no {', '.join(missing)}")
        check_fields(entry, SWEEP_ENTRY_FIELDS, where, problems)
    return problems


# ---------------------------------------------------------------- marks


def read_csv_table(
    path: Path, what: str, required: tuple[str, ...], text_columns: tuple[str, ...] = ()
) -> Any:
    """A CSV file (``what`` names its kind in messages) with the ``required`` columns, the
    ``text_columns`` read as text. A file that cannot be read or parsed, or lacks a column, raises
    ValueError naming it and why."""
    import pandas as pd

    try:
        table = pd.read_csv(path, dtype={column: str for column in text_columns})
    except ValueError as err:  # ParserError, EmptyDataError and UnicodeDecodeError among them
        raise ValueError(f"{path} is not a {what}: {str(err).splitlines()[0][:120]}") from None
    except OSError as err:
        raise ValueError(f"{path} cannot be read ({err.strerror or err})") from None
    missing = [column for column in required if column not in table.columns]
    if missing:
        columns = ", ".join(map(str, table.columns))
        raise ValueError(f"{path} has no {', '.join(repr(c) for c in missing)} column: columns are {columns}")
    return table


# ---------------------------------------------------------------- saved evaluations


def evaluation_bins(info: dict[str, Any], file: str) -> tuple[str, str]:
    """A saved evaluation summary's bin scheme (default ``groups10``, an old name read as today's),
    and what is wrong with it ("" when it names a scheme)."""
    from agelab.bins import get_scheme

    bins = info.get("bins", "groups10")
    if not isinstance(bins, str):
        return "groups10", f"{file}: bins is {shown(bins)}, not a bin scheme"
    try:
        return get_scheme(bins).spec, ""
    except ValueError as err:
        return bins, f"{file}: bins {shown(bins)} is not a bin scheme ({err})"


# ---------------------------------------------------------------- model sidecars

# Sizes a model may take: smaller than the smallest face crop is no model, and larger than this is
# no sidecar agelab wrote.
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 1024
TEMPERATURE_KEYS = ("age_bin_temperature", "gender_temperature")


def sidecar_problems(meta: dict[str, Any]) -> list[str]:
    """What makes a sidecar unfit to serve its model, each a sentence naming the key and what to do;
    empty when it is sound. Checked: ``bins`` names a scheme, ``image_size`` is a whole number of
    pixels, ``bin_labels`` (when recorded) are that scheme's, and the calibration temperatures are
    positive numbers."""
    from agelab.bins import get_scheme

    problems = []
    bins = meta.get("bins")
    scheme = None
    try:
        scheme = get_scheme(bins) if isinstance(bins, str) else None
    except ValueError:
        pass
    if scheme is None:
        problems.append(
            f"bins {shown(bins)} is not a bin scheme (groups10, equal12, decades or edges such as 0,3,13,20)"
        )
    size = meta.get("image_size")
    if not (
        isinstance(size, int) and not isinstance(size, bool) and MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE
    ):
        problems.append(
            f"image_size {shown(size)} is not a size in pixels ({MIN_IMAGE_SIZE}-{MAX_IMAGE_SIZE}, a whole number)"
        )
    labels = meta.get("bin_labels")
    if scheme is not None and labels is not None and labels != scheme.labels:
        problems.append(
            f"bin_labels {shown(labels)} are not those of bins {bins!r} ({shown(scheme.labels)}): the bins were"
            " changed after training; restore the scheme the model was trained with"
        )
    calibration = meta.get("calibration")
    if calibration is not None and not isinstance(calibration, dict):
        problems.append(
            f"calibration is {shown(calibration)}, not a mapping; run `python -m agelab calibrate` again"
        )
    elif isinstance(calibration, dict):
        for key in TEMPERATURE_KEYS:
            value = calibration.get(key, 1.0)
            if not (_is_number(value) and value > 0):
                problems.append(
                    f"calibration {key} is {shown(value)}, not a positive number; run `python -m agelab calibrate` again"
                )
    return problems
