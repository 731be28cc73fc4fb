"""Where agelab keeps things. Every location can be moved with an environment variable, listed with
its default in :mod:`agelab.settings`."""

from __future__ import annotations

from pathlib import Path

from agelab import settings
from agelab.settings import PROJECT_ROOT

__all__ = ["PROJECT_ROOT", "cache_dir", "data_dir", "keras_home", "mirror_dir", "models_dir", "runs_dir"]


def _location(name: str) -> Path:
    location = settings.path(name)
    assert location is not None, f"{name} is a location with a default"
    return location


def data_dir() -> Path:
    """The UTKFace image folder the app works on (``AGELAB_DATA``)."""
    return _location("AGELAB_DATA")


def cache_dir() -> Path:
    """Index, split and feature caches. Never inside the image folder, which may be read-only."""
    return _location("AGELAB_CACHE_DIR")


def runs_dir() -> Path:
    """Training run folders (``AGELAB_RUNS_DIR``)."""
    return _location("AGELAB_RUNS_DIR")


def models_dir() -> Path:
    """Shipped models and fetched detector models (``AGELAB_MODELS_DIR``)."""
    return _location("AGELAB_MODELS_DIR")


def keras_home() -> Path:
    """A writable KERAS_HOME inside the project; Keras silently ignores one it cannot write."""
    return _location("KERAS_HOME")


def mirror_dir() -> Path | None:
    """A local folder laid out like ``../shared`` (``AGELAB_MIRROR``), or None."""
    return settings.path("AGELAB_MIRROR")
