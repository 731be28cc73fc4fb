"""agelab.settings: the one list of environment variables, the install guide's copy of it, and the code's reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agelab import paths, settings
from agelab.paths import PROJECT_ROOT

# A read of a variable named by a literal: os.environ.get("X"), os.getenv("X"), os.environ["X"] (not
# an assignment to it), settings.get("X") or settings.path("X").
LITERAL = r"""\s*["']([A-Z][A-Z0-9_]*)["']"""
DIRECT_READ = re.compile(rf"""(?:environ\.get\(|getenv\(){LITERAL}|environ\[{LITERAL}\](?!\s*=[^=])""")
SETTINGS_READ = re.compile(rf"""settings\.(?:get|path)\({LITERAL}""")
SOURCES = ("agelab", "pages", "bench", "tests", "app.py", "streamlit_setup.py")


def python_files() -> list[Path]:
    files: list[Path] = []
    for name in SOURCES:
        path = PROJECT_ROOT / name
        files += [path] if path.is_file() else [p for p in path.rglob("*.py") if ".venv" not in p.parts]
    return files


def names(pattern: re.Pattern[str], text: str) -> list[str]:
    return [
        next(filter(None, groups)) if isinstance(groups, tuple) else groups
        for groups in pattern.findall(text)
    ]


def reads() -> dict[str, set[str]]:
    """Variable name -> the files that read it."""
    found: dict[str, set[str]] = {}
    for path in python_files():
        text = path.read_text(encoding="utf-8")
        for name in [*names(DIRECT_READ, text), *names(SETTINGS_READ, text)]:
            if name.startswith("AGELAB_") or name in settings.SETTINGS:
                found.setdefault(name, set()).add(str(path.relative_to(PROJECT_ROOT)))
    return found


def test_every_variable_the_code_reads_is_listed():
    unlisted = {name: files for name, files in reads().items() if name not in settings.SETTINGS}
    assert not unlisted, f"list these in agelab/settings.py: {unlisted}"


def test_the_library_reads_listed_variables_only_through_settings():
    direct = [
        f"{path.relative_to(PROJECT_ROOT)}: {name}"
        for path in python_files()
        if path.parts[len(PROJECT_ROOT.parts)] in ("agelab", "pages") and path.name != "settings.py"
        for name in names(DIRECT_READ, path.read_text(encoding="utf-8"))
        if name in settings.SETTINGS
    ]
    assert not direct, f"read these through agelab.settings: {direct}"


def test_the_install_guide_table_is_the_settings_table():
    guide = (PROJECT_ROOT / "docs" / "install.md").read_text(encoding="utf-8")
    assert settings.markdown_table() in guide
    assert settings.markdown_table(test_only=True) in guide


def test_locations_default_under_the_project_and_follow_their_variable(monkeypatch, tmp_path):
    for name in ("AGELAB_DATA", "AGELAB_RUNS_DIR", "AGELAB_CACHE_DIR", "AGELAB_MODELS_DIR", "KERAS_HOME"):
        monkeypatch.delenv(name, raising=False)
    assert paths.data_dir() == PROJECT_ROOT / "data" / "UTKFace"
    assert paths.runs_dir() == PROJECT_ROOT / "runs"
    monkeypatch.setenv("AGELAB_RUNS_DIR", str(tmp_path))
    assert paths.runs_dir() == tmp_path
    monkeypatch.setenv("AGELAB_RUNS_DIR", "  ")  # empty counts as unset
    assert paths.runs_dir() == PROJECT_ROOT / "runs"
    monkeypatch.delenv("AGELAB_MIRROR", raising=False)
    assert paths.mirror_dir() is None


def test_an_unlisted_variable_cannot_be_read():
    unlisted = "AGELAB_" + "NOPE"  # built, so the scan above does not take it for a read
    with pytest.raises(KeyError, match=unlisted):
        settings.get(unlisted)
