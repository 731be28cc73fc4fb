"""Where agelab keeps things. Every location can be moved with an environment variable."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """The UTKFace image folder the app works on (``AGELAB_DATA``, default ``data/UTKFace``)."""
    return Path(os.environ.get("AGELAB_DATA", PROJECT_ROOT / "data" / "UTKFace"))


def cache_dir() -> Path:
    """Index, split and feature caches. Never inside the image folder, which may be read-only."""
    return Path(os.environ.get("AGELAB_CACHE_DIR", PROJECT_ROOT / "data" / "cache"))


def runs_dir() -> Path:
    """Training run folders (``AGELAB_RUNS_DIR``, default ``runs/``)."""
    return Path(os.environ.get("AGELAB_RUNS_DIR", PROJECT_ROOT / "runs"))


def models_dir() -> Path:
    """Shipped models and fetched detector models."""
    return Path(os.environ.get("AGELAB_MODELS_DIR", PROJECT_ROOT / "models"))


def keras_home() -> Path:
    """A writable KERAS_HOME inside the project; Keras silently ignores one it cannot write."""
    return Path(os.environ.get("KERAS_HOME", PROJECT_ROOT / ".keras"))


def mirror_dir() -> Path | None:
    """A local folder laid out like ``../shared`` (``AGELAB_MIRROR``), or None."""
    value = os.environ.get("AGELAB_MIRROR")
    return Path(value) if value else None
