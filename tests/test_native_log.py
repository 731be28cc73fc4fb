"""The full-range face detector loads without LiteRT's per-tensor sparsity notice, in a real process,
and every other line of the native log still comes through."""

from __future__ import annotations

import subprocess
import sys

from agelab.native_log import SPARSITY_NOTICE
from agelab.paths import PROJECT_ROOT
from tests.real_data import find_detector_models, require

SCRIPT = """
import os, sys
from agelab.faces import FaceDetector
from agelab.native_log import dropped_native_lines
with dropped_native_lines("never printed"):
    os.write(2, b"a native line that stays\\n")
FaceDetector("full").close()
print("loaded", flush=True)
"""


def test_the_full_range_detector_loads_without_the_sparsity_notice():
    require(find_detector_models(), "MediaPipe face detector models")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "loaded"
    assert SPARSITY_NOTICE not in done.stderr
    assert "a native line that stays" in done.stderr
