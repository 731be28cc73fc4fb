"""Shared fixtures. Tests run on the real UTKFace images from ../shared (or data/UTKFace)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from agelab.paths import PROJECT_ROOT

SHARED = PROJECT_ROOT.parent / "shared"


def find_utkface() -> Path:
    for candidate in (
        os.environ.get("AGELAB_DATA"),
        PROJECT_ROOT / "data" / "UTKFace",
        SHARED / "data" / "utkface",
    ):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    pytest.fail("No UTKFace folder: run `python -m agelab setup` or put ../shared beside the checkout")


@pytest.fixture(scope="session")
def utkface_dir() -> Path:
    """The real, full UTKFace folder (22,162 files, 9 malformed names)."""
    return find_utkface()


@pytest.fixture(scope="session")
def duplicates_csv() -> Path:
    return SHARED / "data" / "utkface_content_duplicates.csv"


@pytest.fixture
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Runs and caches go to a temporary folder, so tests never touch the user's runs."""
    monkeypatch.setenv("AGELAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("AGELAB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def copy_real_images(source: Path, dest: Path, count: int, step: int = 50) -> list[Path]:
    """Copy every ``step``-th well-named real UTKFace image into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    names = sorted(n for n in os.listdir(source) if n.endswith(".jpg.chip.jpg"))
    out = []
    for name in names[::step][:count]:
        shutil.copy2(source / name, dest / name)
        out.append(dest / name)
    return out
