"""Shared by the browser tests: where Chromium is, how to start it, how to wait for the app."""

from __future__ import annotations

import os
import shutil
import time

CHROMIUM = os.environ.get("AGELAB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# The network here is closed: Chromium's background connections would only be refused.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def wait_idle(page, timeout_s: float = 180) -> None:
    """Until the script run that the last action started has ended."""
    time.sleep(1.0)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if page.query_selector("[data-testid=stStatusWidget] button:has-text('Stop')") is None:
            return
        time.sleep(0.5)
    raise AssertionError(f"the app was still running after {timeout_s} s")


def no_exceptions(page) -> None:
    shown = [e.inner_text()[:500] for e in page.query_selector_all("[data-testid=stException]")]
    assert not shown, shown
