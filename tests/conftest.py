"""Shared fixtures. Tests run on the real UTKFace images from ../shared (or data/UTKFace); without
them, the tests that need them are skipped (see tests/real_data.py)."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import pytest

from tests.real_data import SHARED, find_utkface, missing_asset, require


@pytest.fixture(scope="session")
def utkface_dir() -> Path:
    """The real, full UTKFace folder (22,162 files, 9 malformed names)."""
    return require(find_utkface(), "UTKFace folder (AGELAB_DATA, data/UTKFace or ../shared/data/utkface)")


@pytest.fixture(scope="session")
def duplicates_csv() -> Path:
    return require(SHARED / "data" / "utkface_content_duplicates.csv", "UTKFace duplicates list")


@pytest.fixture
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Runs and caches go to a temporary folder, so tests never touch the user's runs."""
    monkeypatch.setenv("AGELAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("AGELAB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


# A test (or fixture) that fails for want of an asset a fresh clone may lack (no ../shared, no
# internet) is skipped with the reason instead; only when the asset really is absent, so that a bug in
# finding a present one still fails.
@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    return (yield from _skip_missing_assets())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    return (yield from _skip_missing_assets())


def _skip_missing_assets() -> Generator[None, None, None]:
    try:
        return (yield)
    except Exception as exc:
        reason = missing_asset(exc)
        if reason is None:
            raise
        pytest.skip(reason)


@pytest.fixture(scope="module")
def detector_env() -> Generator[None, None, None]:
    """``AGELAB_FACE_MODEL`` set to the folder of the MediaPipe detector models for a whole module
    (skipped without them)."""
    from tests.predict_helpers import detector_models_dir

    patch = pytest.MonkeyPatch()
    patch.setenv("AGELAB_FACE_MODEL", str(detector_models_dir()))
    yield
    patch.undo()
