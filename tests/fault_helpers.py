"""Faults that need root to stage: a full disk (a small tmpfs mounted by the test) and an unreadable or
read-only file for a process that would otherwise read it anyway (root, run under ``setpriv`` without
``CAP_DAC_OVERRIDE`` and ``CAP_DAC_READ_SEARCH``). Tests using them are marked ``privileged``."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_tmpfs(mount: Path, size: str = "1M") -> Iterator[Path]:
    """A ``size`` tmpfs mounted at ``mount`` for the block; the test is skipped where none can be."""
    mount.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> None:
    """Fill the disk to the last byte."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    chunk = 65536
    try:
        while chunk:
            try:
                os.write(fd, b"\0" * chunk)
            except OSError:
                chunk //= 2
    finally:
        os.close(fd)
