"""Every environment variable agelab reads, in one table: its name, default, meaning and readers.

Code reads a variable through :func:`get` (or :func:`path` for a location), never through
``os.environ`` directly, so a variable cannot be read without being listed here. docs/install.md's
settings table is :func:`markdown_table`; a test keeps the two, and the code, in step.

This module imports nothing heavy: :mod:`agelab` reads ``KERAS_HOME`` through it before Keras loads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Setting:
    name: str
    # The value an unset (or empty) variable stands for; a location's is relative to the project root.
    # None: no value, and ``unset`` says in words what happens then.
    default: str | None
    help: str
    readers: tuple[str, ...]
    unset: str = ""
    test_only: bool = False

    def shown_default(self) -> str:
        return f"`{self.default}`" if self.default is not None else f"({self.unset})"


_SETTINGS = (
    Setting(
        "AGELAB_DATA",
        "data/UTKFace",
        "the dataset folder (also settable in the Dataset page's sidebar)",
        ("agelab/paths.py: data_dir",),
    ),
    Setting(
        "AGELAB_RUNS_DIR",
        "runs",
        "training runs, and saved evaluations under `runs/evaluations/`",
        ("agelab/paths.py: runs_dir",),
    ),
    Setting(
        "AGELAB_CACHE_DIR",
        "data/cache",
        "index, split and feature caches",
        ("agelab/paths.py: cache_dir",),
    ),
    Setting(
        "AGELAB_MODELS_DIR",
        "models",
        "the shipped model and the face detectors",
        ("agelab/paths.py: models_dir",),
    ),
    Setting(
        "AGELAB_MIRROR",
        None,
        "a local folder laid out like `../shared`, used by `setup` and the face detector lookup",
        ("agelab/paths.py: mirror_dir",),
        unset="none; the Makefile sets `../shared` when it exists",
    ),
    Setting(
        "AGELAB_FACE_MODEL",
        None,
        "a MediaPipe face detector `.tflite`, or a folder holding `face_detection_*.tflite`",
        ("agelab/faces.py: detector_model_path",),
        unset="none: `models/face_detection_short_range.tflite`",
    ),
    Setting(
        "AGELAB_RAY_ADDRESS",
        None,
        "a Ray head's dashboard address (`host:8265`): runs and sweeps become Ray jobs (see Cluster)",
        ("agelab/launchers.py: ray_address",),
        unset="none: runs on this machine",
    ),
    Setting(
        "AGELAB_ICE_SERVERS",
        None,
        "JSON STUN/TURN servers for the live webcam across networks",
        ("agelab/live.py: rtc_configuration",),
        unset='none: `{"iceServers": []}`',
    ),
    Setting(
        "KERAS_HOME",
        ".keras",
        "where the ImageNet weights are cached (must be writable); set before Keras loads",
        ("agelab/paths.py: keras_home", "agelab/__init__.py", "Keras"),
    ),
    Setting(
        "TF_CPP_MIN_LOG_LEVEL",
        "2",
        "TensorFlow's C++ log level; agelab sets 2 (warnings and errors only) when it is unset",
        ("agelab/__init__.py", "TensorFlow"),
    ),
    Setting(
        "AGELAB_CHROMIUM",
        None,
        "the Chromium binary the browser tests drive",
        ("tests/browser/test_dashboard.py",),
        unset="none: `chromium` on PATH",
        test_only=True,
    ),
    Setting(
        "AGELAB_SCREENSHOTS",
        None,
        "a folder the browser tests save full-page screenshots into, for a person to look at",
        ("tests/browser/test_dashboard.py",),
        unset="none: no screenshots",
        test_only=True,
    ),
    Setting(
        "AGELAB_SOAK_REPORT",
        None,
        "a JSON file the soak test writes its memory, error and frame-rate figures to",
        ("tests/browser/test_soak.py",),
        unset="none: printed only",
        test_only=True,
    ),
)
SETTINGS: dict[str, Setting] = {s.name: s for s in _SETTINGS}


def _set_value(name: str) -> str | None:
    if name not in SETTINGS:
        raise KeyError(f"{name} is not in agelab.settings.SETTINGS; list it there before reading it")
    # An empty value counts as unset, as in `AGELAB_MIRROR= make test`.
    return os.environ.get(name, "").strip() or None


def get(name: str) -> str | None:
    """The variable's value, else its default (None when it has none)."""
    return _set_value(name) or SETTINGS[name].default


def path(name: str) -> Path | None:
    """A location: the variable's value, else its default under the project root, else None."""
    value = _set_value(name)
    if value is not None:
        return Path(value)
    default = SETTINGS[name].default
    return None if default is None else PROJECT_ROOT / default


def markdown_table(test_only: bool = False) -> str:
    """docs/install.md's table of the user-facing variables (or of the test-only ones)."""
    rows = ["| variable | default | what |", "|---|---|---|"]
    rows += [
        f"| `{s.name}` | {s.shown_default()} | {s.help} |" for s in _SETTINGS if s.test_only == test_only
    ]
    return "\n".join(rows)
