"""Where the tests find the real data (UTKFace, and ../shared beside the checkout), and copies of it.

Tests that need data that is absent are skipped with the reason (conftest's fixtures, and
:func:`require`), never errored: a fresh clone without ../shared runs what it can.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from agelab import settings
from agelab.paths import PROJECT_ROOT

SHARED = PROJECT_ROOT.parent / "shared"
SETUP_HINT = "run `python -m agelab setup`, or put ../shared beside the checkout"


def find_utkface() -> Path | None:
    """The real UTKFace folder: ``AGELAB_DATA``, else ``data/UTKFace``, else ../shared's; None if absent."""
    for candidate in (
        settings.get("AGELAB_DATA"),
        PROJECT_ROOT / "data" / "UTKFace",
        SHARED / "data" / "utkface",
    ):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def find_detector_models() -> Path | None:
    """The folder holding the MediaPipe detector models: the models folder, else ../shared's; or None."""
    from agelab.paths import models_dir

    for folder in (models_dir(), SHARED / "mediapipe"):
        if (folder / "face_detection_short_range.tflite").is_file():
            return folder
    return None


def require(path: Path | None, what: str) -> Path:
    """``path``, or skip the test saying what is missing and how to get it."""
    if path is None or not path.exists():
        pytest.skip(f"no {what}{f' at {path}' if path else ''}: {SETUP_HINT}")
    return path


def missing_asset(exc: BaseException) -> str | None:
    """Why ``exc`` means an asset is absent from this machine (not merely mislaid), or None."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "DetectorModelError" in names:
        if find_detector_models() is None:
            return f"no MediaPipe face detector model (models/, ../shared/mediapipe): {SETUP_HINT}"
    if "WeightsUnavailable" in names:
        from agelab.paths import keras_home

        if not any((keras_home() / "models").glob("*.h5")):
            return f"no Keras ImageNet weights in {keras_home() / 'models'}: {SETUP_HINT}"
    return None


def copy_real_images(source: Path, dest: Path, count: int, step: int = 50) -> list[Path]:
    """Copy every ``step``-th well-named real UTKFace image into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    names = sorted(n for n in os.listdir(source) if n.endswith(".jpg.chip.jpg"))
    out = []
    for name in names[::step][:count]:
        shutil.copy2(source / name, dest / name)
        out.append(dest / name)
    return out


def real_images_fixture(count: int, step: int) -> Any:
    """A module-scoped fixture (named by the module variable it is assigned to): a folder of ``count``
    real UTKFace images, every ``step``-th (:func:`copy_real_images`), copied once per test module."""

    @pytest.fixture(scope="module")
    def folder(utkface_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
        made = tmp_path_factory.mktemp(f"utk{count}")
        copy_real_images(utkface_dir, made, count, step=step)
        return made

    return folder


def splits_with_and_without_marks(folder: Path) -> tuple[Any, Any]:
    """A run's data of ``folder`` (no crop, no rebalancing) before and after ``exclude=`` its marks."""
    from agelab import marks
    from agelab.bins import GROUPS10
    from agelab.training.splits import prepare_data

    config = {"data": str(folder), "max_images": 0, "seed": 0, "crop": "none", "rebalance": "none",
              "rebalance_by_race": False, "rebalance_power": 1.0}  # fmt: skip
    before = prepare_data({**config, "exclude": ""}, GROUPS10, lambda _: None)
    after = prepare_data({**config, "exclude": str(marks.marks_path(folder))}, GROUPS10, lambda _: None)
    return before, after
