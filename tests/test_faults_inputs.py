"""Training inputs that do not decode: a damaged crop-cache entry is made again, a corrupt source image
is left out by name, and a failed run's process ends instead of living on. Real images, real runs
through ``python -m agelab train``. (A features file of another width: tests/test_faults.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agelab import runs
from agelab.paths import PROJECT_ROOT
from tests.real_data import copy_real_images

TINY = ["model=small_cnn", "weights=none", "image_size=64", "epochs=1", "batch_size=8"]
# A tiny run takes about 10 s; the limit only catches a process that never ends.
RUN_LIMIT_S = 300


def train_command(*overrides: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agelab", "train", *TINY, *overrides],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env=env or dict(os.environ),
        timeout=RUN_LIMIT_S,
    )


@pytest.fixture
def sixty_images(utkface_dir: Path, tmp_path: Path) -> Path:
    return copy_real_images(utkface_dir, tmp_path / "utk", 60, step=300)[0].parent


def test_damaged_crop_cache_entries_are_made_again(sixty_images, isolated_dirs, detector_env):
    from agelab.crop_cache import aligned_inputs
    from agelab.saved_split import load_dataset

    crops = aligned_inputs(load_dataset(sixty_images), 64, log=lambda _: None)
    garbage, empty = Path(crops["input"][3]), Path(crops["input"][7])
    garbage.write_bytes(os.urandom(700))
    empty.write_bytes(b"")

    done = train_command(f"data={sixty_images}", "crop=aligned", "name=healed")
    assert done.returncode == 0, done.stderr[-3000:]
    run = runs.load_run(Path(done.stdout.strip().splitlines()[-1]))
    assert run.state == "finished"
    assert "2 cached crops do not decode" in (run.path / "log.txt").read_text()
    for crop in (garbage, empty):  # made again, whole
        assert crop.stat().st_size > 0 and crop.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_corrupt_images_with_good_names_are_left_out_by_name(sixty_images, isolated_dirs):
    names = sorted(sixty_images.iterdir())
    garbage, truncated = names[10], names[20]
    garbage.write_bytes(os.urandom(2000))
    truncated.write_bytes(truncated.read_bytes()[:300])

    done = train_command(f"data={sixty_images}", "crop=none", "name=corrupt")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "terminate called" not in done.stderr
    run = runs.load_run(Path(done.stdout.strip().splitlines()[-1]))
    log = (run.path / "log.txt").read_text()
    assert run.state == "finished"
    assert f"skipped {garbage}" in log and f"skipped {truncated}" in log
    assert "left out 2 image(s) that do not decode" in log


def test_a_failed_run_ends_its_process_though_a_thread_lives_on(utkface_dir, isolated_dirs, tmp_path):
    # A thread that never ends stands in for TensorFlow's input threads, which kept a failed run's
    # process alive after its status said failed.
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        textwrap.dedent(
            """
            import threading, time
            threading.Thread(target=lambda: time.sleep(3600), name="lingering", daemon=False).start()
            """
        )
    )
    # Three images cannot fill three splits: the run starts, then fails.
    few = copy_real_images(utkface_dir, tmp_path / "few", 3, step=5000)[0].parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), str(PROJECT_ROOT)])}
    try:
        done = train_command(f"data={few}", "crop=none", "name=lingers", env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the failed run's process was still alive after {RUN_LIMIT_S} s")
    assert done.returncode == 1, done.stderr[-3000:]
    assert "split is empty" in done.stderr
    run = runs.load_run(Path(done.stdout.strip().splitlines()[-1]))
    assert run.state == "failed" and "split is empty" in run.status["error"]
