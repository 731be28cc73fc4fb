"""agelab installs as a package: ``pip install -e .`` in a fresh venv gives the ``agelab`` command."""

from __future__ import annotations

import subprocess
import sys

from agelab.paths import PROJECT_ROOT


def test_pip_install_editable_gives_the_agelab_command(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    # --no-deps: the dependencies are the project's own venv's business; this checks the packaging.
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(PROJECT_ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if install.returncode != 0 and "setuptools" in install.stderr:
        install = subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "-e", str(PROJECT_ROOT)],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    assert install.returncode == 0, install.stderr[-2000:]
    shown = subprocess.run(
        [str(venv / "bin" / "agelab"), "--help"], capture_output=True, text=True, timeout=120
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "verbs:" in shown.stdout and "train" in shown.stdout and "evaluate" in shown.stdout
    # Only the library is a package: pages/, tests/ and bench/ are not installed as top-level modules.
    listed = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import importlib.util as u; print(u.find_spec('pages'), u.find_spec('bench'))"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert listed.stdout.split() == ["None", "None"], listed.stdout
