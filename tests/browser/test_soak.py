"""Load: four browser sessions loading pages and uploading photos for two minutes, then the live
webcam for two minutes, against one real ``streamlit run app.py``. Run with ``make test-soak``.

Prints (and writes to ``AGELAB_SOAK_REPORT`` when set) the server's resident memory before and after,
the errors in its log, and the webcam's frame rate over time.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

# The fixtures (playwright, group_photo) come with the helpers from the dashboard tests.
from tests.browser.test_dashboard import (  # noqa: F401
    CHROMIUM,
    CHROMIUM_ARGS,
    fake_camera,
    group_photo,
    playwright,
    serve,
    start_live_webcam,
    wait_idle,
)

pytestmark = pytest.mark.soak

PAGES = ("/", "/review", "/predict", "/train")
SESSIONS = 4
PHASE_S = 120


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def log_errors(text: str) -> list[str]:
    return [line for line in text.splitlines() if "Traceback" in line or line.startswith(("Error", "ERROR"))]


def test_four_sessions_then_the_live_webcam_for_two_minutes_each(playwright, group_photo, tmp_path):  # noqa: F811
    runs = tmp_path / "runs"
    runs.mkdir()
    server, url, log = serve(runs, "soak.log")
    report: dict = {"sessions": SESSIONS, "phase_s": PHASE_S}
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pages = [
            browser.new_context(viewport={"width": 1400, "height": 1000}).new_page() for _ in range(SESSIONS)
        ]
        report["rss_started_mb"] = round(rss_mb(server.pid), 1)
        # Every session visits every page once before the "before" reading: loading TensorFlow, the
        # model and the detector is a one-off cost, not growth under load.
        for path in PAGES:
            for page in pages:
                page.goto(url + path)
            for page in pages:
                wait_idle(page, 300)
        report["rss_before_mb"] = round(rss_mb(server.pid), 1)
        loads = uploads = 0
        end = time.time() + PHASE_S
        step = 0
        while time.time() < end:
            # Every session asks at once; then all are waited for, so the server serves them together.
            for i, page in enumerate(pages):
                page.goto(url + PAGES[(step + i) % len(PAGES)])
            for page in pages:
                wait_idle(page, 300)
                loads += 1
                if page.url.endswith("/predict"):
                    uploader = page.locator('input[type="file"]').first
                    if uploader.count():
                        uploader.set_input_files(str(group_photo))
                        uploads += 1
            for page in pages:
                wait_idle(page, 300)
            step += 1
        browser.close()
        report.update(page_loads=loads, uploads=uploads, rss_after_pages_mb=round(rss_mb(server.pid), 1))

        camera, page = start_live_webcam(playwright, url, fake_camera(group_photo, tmp_path))
        fps = []
        end = time.time() + PHASE_S
        while time.time() < end:
            time.sleep(10)
            fps.append(float(page.locator("[data-testid=stMetricValue]").all_inner_texts()[0]))
        camera.close()
        report.update(fps_every_10s=fps, rss_after_webcam_mb=round(rss_mb(server.pid), 1))
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    errors = log_errors((runs.parent / "soak.log").read_text(errors="replace"))
    report["log_errors"] = len(errors)
    print(json.dumps(report))
    if os.environ.get("AGELAB_SOAK_REPORT"):
        Path(os.environ["AGELAB_SOAK_REPORT"]).write_text(json.dumps(report, indent=2))
    assert not errors, errors[:10]
    assert report["page_loads"] >= 4 * SESSIONS and report["uploads"] >= 1
    assert min(fps[1:]) >= 15, fps  # the first reading includes the warm-up
    # Memory settles once every page has been loaded: two minutes of load must not keep it growing.
    assert report["rss_after_pages_mb"] - report["rss_before_mb"] < 200, report
