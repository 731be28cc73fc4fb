"""Each page used as a new user would, in a real headless Chromium against a real ``streamlit run
app.py``, on the real UTKFace images and the shipped model. Run with ``make test-browser``."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from agelab.paths import PROJECT_ROOT, data_dir
from tests.predict_helpers import face_canvas

pytestmark = pytest.mark.browser

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(runs: Path, log_name: str, **settings: str) -> tuple[subprocess.Popen, str, object]:
    """``streamlit run app.py`` on a free loopback port, its runs in ``runs`` (and any other agelab
    ``settings``, such as ``AGELAB_DATA``); waits until healthy."""
    port = _free_port()
    env = {**os.environ, "AGELAB_RUNS_DIR": str(runs), **settings}
    log = open(runs.parent / log_name, "w")  # noqa: SIM115 (closed by the caller)
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=1)
            break
        except OSError:
            if server.poll() is not None:
                pytest.fail(f"streamlit exited with {server.returncode}; see {log.name}")
            time.sleep(0.5)
    return server, url, log


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="session")
def app_url(runs_root: Path) -> Iterator[str]:
    """The dashboard served on loopback, with its runs in a temporary folder."""
    server, url, log = serve(runs_root, "streamlit.log")
    try:
        yield url
    finally:
        server.terminate()
        server.wait(30)
        log.close()


@pytest.fixture(scope="session")
def playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: run `make test-browser`, which installs it")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: `apt-get install chromium`, or set AGELAB_CHROMIUM")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1200})
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture(scope="module")
def group_photo(tmp_path_factory) -> Path:
    """Four real UTKFace faces pasted on a plain canvas."""
    faces = sorted(p for p in data_dir().iterdir() if p.name.startswith("30_0_0_"))[:4]
    path = tmp_path_factory.mktemp("photos") / "group.jpg"
    path.write_bytes(face_canvas(faces, size=200)[0])
    return path


def main_text(page) -> str:
    return page.inner_text("[data-testid=stMain]")


def test_dataset_page_shows_the_real_figures(page, app_url):
    page.goto(app_url)
    page.wait_for_selector("text=Duplicate groups", timeout=120_000)
    wait_idle(page)
    text = main_text(page)
    assert "22,162" in text and "21,581" in text
    assert "Data quality: 9 files left out, 334 duplicate groups" in text
    no_exceptions(page)


def test_train_launch_watch_reload_and_stop(page, app_url):
    page.goto(app_url + "/train")
    page.wait_for_selector("text=New run", timeout=60_000)
    wait_idle(page)
    for label, value in (("Epochs", "6"), ("Max images (0: all)", "3000")):
        field = page.get_by_label(label, exact=True)
        field.fill(value)
        field.press("Tab")
    page.get_by_label("Run name", exact=True).fill("browser")
    page.get_by_test_id("stForm").get_by_text("Fast mode", exact=True).click()  # off: the full network
    page.get_by_role("button", name="Launch", exact=True).click()
    wait_idle(page)
    page.wait_for_selector("text=/batch [1-9]/", timeout=180_000)

    page.reload()  # the run lives in its own process, not in the browser session
    page.wait_for_selector("text=/browser-1 · running/", timeout=60_000)
    page.get_by_role("button", name="Stop", exact=True).click()  # not "Help for Early stopping"
    page.wait_for_selector("text=/browser-1 · stopped/", timeout=120_000)
    assert "stopped in" in main_text(page)
    no_exceptions(page)


def test_review_off_by_two_bar_shows_those_faces(page, app_url):
    open_review(page, app_url)
    chart = page.locator("[data-testid=stPlotlyChart]").nth(1)
    chart.scroll_into_view_if_needed()
    bars = chart.locator("g.trace.bars g.point path")
    bars.first.wait_for(timeout=30_000)
    for i in range(bars.count()):
        box = bars.nth(i).bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] - 2
        page.mouse.move(x, y)
        time.sleep(0.3)
        hover = chart.locator(".hoverlayer").text_content() or ""
        if hover.startswith("+2 bins"):
            break
    else:
        pytest.fail("no +2 bar in the bin-distance chart")
    count = int(re.match(r"\+2 bins: (\d+) images", hover).group(1))
    page.mouse.click(x, y)
    wait_idle(page)
    page.wait_for_selector(f"text=/{count:,} of 3,228 images match/", timeout=30_000)
    tiles = page.get_by_text(re.compile(r"· \+2 bins ·"))
    assert tiles.count() == min(count, 24)  # the first page of the gallery, every one 2 bins over
    no_exceptions(page)


def test_predict_upload_boxes_every_face_and_refuses_a_non_image(page, app_url, group_photo, tmp_path):
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("not an image")
    page.goto(app_url + "/predict")
    page.wait_for_selector("[data-testid=stFileUploader]", timeout=120_000)
    wait_idle(page)
    page.locator("[data-testid=stFileUploader] input[type=file]").set_input_files([group_photo, not_an_image])
    page.wait_for_selector("text=group.jpg: 4 faces", timeout=60_000)
    wait_idle(page)
    text = main_text(page)
    assert "notes.jpg: refused" in text
    # A fresh clone serves the shipped model through its int8 LiteRT twin, and the page says so.
    assert "served by LiteRT (agelab-default.int8.tflite, int8" in text
    assert page.locator("[data-testid=stDataFrame]").count() >= 1
    shot(page, "predict")
    no_exceptions(page)


def fake_camera(photo_path: Path, folder: Path) -> Path:
    """A 30 fps y4m clip of four real faces swaying sideways but never leaving the 640x480 frame."""
    photo = cv2.imread(str(photo_path))
    scaled = cv2.resize(photo, (600, round(600 * photo.shape[0] / photo.shape[1])))
    top = (480 - scaled.shape[0]) // 2
    video = folder / "faces.y4m"
    with open(video, "wb") as f:
        f.write(b"YUV4MPEG2 W640 H480 F30:1 Ip A1:1 C420jpeg\n")
        for i in range(60):
            frame = np.full((480, 640, 3), 200, np.uint8)
            left = 10 + min(i, 59 - i)
            frame[top : top + scaled.shape[0], left : left + 600] = scaled
            f.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return video


def start_live_webcam(playwright, app_url: str, video: Path):
    """A browser whose camera plays ``video``, on the Predict page's live webcam, started; returns
    the browser (to close) and the page."""
    camera_browser = playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=[
            *CHROMIUM_ARGS,
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={video}",
        ],
    )
    page = camera_browser.new_context(permissions=["camera"]).new_page()
    page.goto(app_url + "/predict")
    page.wait_for_selector("text=Live webcam", timeout=120_000)
    wait_idle(page)
    page.get_by_text("Live webcam").click()
    wait_idle(page)
    page.frame_locator("iframe[title*='streamlit_webrtc']").first.get_by_role("button", name="START").click()
    page.wait_for_selector("text=frames per second", timeout=60_000)
    return camera_browser, page


def test_live_webcam_follows_all_four_faces(playwright, app_url, group_photo, tmp_path):
    """The live webcam finds and follows every face, frame after frame. Its frame rate is a benchmark's
    to measure (bench/latency.py, make test-soak), not a test's: a busy machine would fail a floor."""
    camera_browser, page = start_live_webcam(playwright, app_url, fake_camera(group_photo, tmp_path))
    # The shipped model's twin holds one view: the page says each face gets one a frame.
    page.wait_for_selector("text=one view a frame, the image and its mirror in turn", timeout=10_000)
    time.sleep(15)  # past the first frames' warm-up
    readings = []
    for _ in range(5):
        time.sleep(2)
        metrics = page.locator("[data-testid=stMetricValue]").all_inner_texts()
        readings.append((float(metrics[0]), int(metrics[2])))
    camera_browser.close()
    assert all(r[0] > 0 for r in readings), f"frames per second: {[r[0] for r in readings]}"
    assert all(r[1] == 4 for r in readings), f"faces: {[r[1] for r in readings]}"


def shot(page, name: str) -> None:
    """A full-page screenshot into AGELAB_SCREENSHOTS, when set, for a person to look at."""
    folder = os.environ.get("AGELAB_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def reviewed(runs_root: Path, monkeypatch) -> pd.DataFrame:
    """The shipped model's test-split predictions that the Review page shows, read from disk."""
    from agelab.evaluation.predictions import load_predictions, with_derived_columns
    from agelab.evaluation.sources import list_sources

    monkeypatch.setenv("AGELAB_RUNS_DIR", str(runs_root))
    source = next(s for s in list_sources() if s.info.get("default_model"))
    return with_derived_columns(load_predictions(source.predictions), source.bins)


def pick_option(page, select, name: str, tries: int = 3) -> None:
    """Choose ``name`` in a multiselect. A click that lands while the page is still rerunning opens
    the list only to have the rerun close it, so the list is opened again until the option shows."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    option = page.get_by_role("option", name=name)
    for attempt in range(tries):
        wait_idle(page)
        select.locator("input").click()
        try:
            option.wait_for(state="visible", timeout=5_000)
            break
        except PlaywrightTimeout:
            if attempt == tries - 1:
                raise
    option.click()


def open_review(page, app_url: str) -> None:
    """Review's test-split view (the page opens on the training labels that look wrong)."""
    page.goto(app_url + "/review")
    page.wait_for_selector("h1:has-text('Review')", timeout=120_000)
    wait_idle(page)
    page.get_by_role("radio", name="Test-split mistakes").click()
    # The first visit scores the shipped model on the saved test split.
    page.wait_for_selector("text=Bin distance", timeout=300_000)
    wait_idle(page, 300)


def gallery_tiles(page):
    # Every gallery tile's text is one caption that starts with the truth.
    return page.locator("[data-testid=stCaptionContainer]", has_text=re.compile(r"^true: "))


def matching_count(page) -> int:
    text = page.get_by_text(re.compile(r"of [\d,]+ images match")).first.inner_text()
    return int(text.split(" of ")[0].replace(",", ""))


def test_review_tiles_most_wrong_first_and_marks_that_train_honours(
    page, app_url, runs_root, monkeypatch, tmp_path
):
    from agelab import marks
    from agelab.evaluation.gallery import sort_predictions, tile_lines

    open_review(page, app_url)
    frame = reviewed(runs_root, monkeypatch)
    marks_file = marks.marks_path(Path(frame["path"].iloc[0]).parent)
    saved = marks_file.read_bytes() if marks_file.exists() else None  # the user's own marks
    marks_file.unlink(missing_ok=True)
    try:
        open_review(page, app_url)  # a reload opens on the training labels again
        tiles = gallery_tiles(page)
        tiles.first.wait_for(timeout=60_000)
        assert tiles.count() == 24
        texts = [tiles.nth(i).inner_text() for i in range(24)]
        # Most wrong first: the first tile is as many bins off as the worst prediction.
        offs = [
            abs(int(re.search(r"· ([+-]\d+) bins? ·", t).group(1))) if "exact bin" not in t else 0
            for t in texts
        ]
        assert offs[0] == int(frame["abs_distance"].max()) and offs == sorted(offs, reverse=True)
        # A tile reads: true bin, age, gender, ethnicity; the prediction and its distance; the file.
        first = sort_predictions(frame, "most wrong").iloc[0]
        for line in tile_lines(first):
            assert line in texts[0], (line, texts[0])
        shot(page, "review-gallery")

        page.get_by_text("label looks wrong").first.click()
        wait_idle(page)
        page.wait_for_selector("text=Export the marks (CSV)", timeout=30_000)
        assert marks.excluded_files(marks_file) == {Path(first["path"]).name}

        # The file the page wrote, given as is to `train exclude=`.
        data = tmp_path / "data"
        data.mkdir()
        for name in sorted(os.listdir(data_dir()))[::150][:120] + [Path(first["path"]).name]:
            shutil.copy2(data_dir() / name, data / name)
        env = {
            **os.environ,
            "AGELAB_RUNS_DIR": str(tmp_path / "runs"),
            "AGELAB_CACHE_DIR": str(tmp_path / "cache"),
        }
        done = subprocess.run(
            [sys.executable, "-m", "agelab", "train", "model=small_cnn", "image_size=32", "epochs=1",
             "augment=false", "crop=none", f"data={data}", f"exclude={marks_file}"],
            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        run_dir = Path(done.stdout.strip().splitlines()[-1])
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["n_excluded"] == 1
        tested = pd.read_parquet(run_dir / "predictions.parquet")["path"].map(os.path.basename)
        assert Path(first["path"]).name not in set(tested)
        no_exceptions(page)
    finally:
        marks_file.unlink(missing_ok=True)
        if saved is not None:
            marks_file.write_bytes(saved)


def test_review_clear_drops_every_chip_for_good(page, app_url, runs_root, monkeypatch):
    open_review(page, app_url)
    frame = reviewed(runs_root, monkeypatch)
    gender = page.locator("[data-testid=stMultiSelect]", has_text="Gender")
    pick_option(page, gender, "Female")
    page.keyboard.press("Escape")
    wait_idle(page)
    assert matching_count(page) == int((frame["gender"] == 1).sum())
    page.get_by_role("button", name="Clear", exact=True).click()
    wait_idle(page)
    assert matching_count(page) == len(frame)
    # The next change must not bring the chip back.
    page.locator("[data-testid=stRadio]", has_text="Direction").get_by_text("over", exact=True).click()
    wait_idle(page)
    assert matching_count(page) == int((frame["distance"] > 0).sum())
    assert "Female" not in gender.inner_text()
    no_exceptions(page)


def test_a_deep_link_on_a_fresh_server_gets_the_apps_layout_and_menu(browser, tmp_path):
    server, url, log = serve(tmp_path / "runs", "fresh.log")
    try:
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        page.goto(url + "/predict")  # before anyone opens /
        page.wait_for_selector("h1:has-text('Predict')", timeout=120_000)
        wait_idle(page)
        links = page.locator("[data-testid=stSidebarNavLink]")
        texts = links.all_inner_texts()
        assert len(texts) == 4, texts  # not "app, dataset, predict, review, train"
        for link, title in zip(texts, ["Dataset", "Train", "Review", "Predict"]):
            assert link.strip().endswith(title), texts
        assert links.locator("[data-testid=stIconMaterial]").count() == 4  # with their icons
        # app.py's wide layout: the centred one is 736 px at most.
        assert page.locator("[data-testid=stMainBlockContainer]").bounding_box()["width"] > 1000
        no_exceptions(page)
        page.context.close()
    finally:
        server.terminate()
        server.wait(30)
        log.close()


def test_no_request_leaves_the_loopback_address(page, app_url):
    """Face photos are personal data and the app serves on 127.0.0.1 only: nothing it shows may be
    fetched from elsewhere (a ":material/...:" page icon made the browser ask fonts.gstatic.com)."""
    from urllib.parse import urlparse

    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    page.on("websocket", lambda socket: asked.append(socket.url))
    for path in ("", "/train", "/predict", "/review"):
        page.goto(app_url + path)
        page.wait_for_selector("[data-testid=stMain] h1", timeout=300_000)
        wait_idle(page, 300)
        icon = page.locator("link[rel='shortcut icon']").get_attribute("href") or ""
        asked.append(icon if urlparse(icon).scheme else app_url + icon)
    outside = {
        url
        for url in asked
        if urlparse(url).scheme not in ("data", "blob")
        and urlparse(url).hostname not in ("127.0.0.1", "localhost")
    }
    assert len(asked) > 20 and not outside, sorted(outside)


def test_labels_step_with_the_keyboard_mark_three_and_train_without_them(browser, tmp_path, utkface_dir):
    """Review opens on the training labels that look wrong: step with the arrow keys, mark three faces
    with M and a reason each, launch `train exclude=` from the page; the new run trains on three faces
    fewer, and its test split is the same, file for file."""
    from agelab import marks, run_status
    from tests.real_data import copy_real_images, splits_with_and_without_marks

    folder = tmp_path / "utk"
    copy_real_images(utkface_dir, folder, 300, step=70)
    cache = tmp_path / "cache"
    (tmp_path / "runs").mkdir()
    server, url, log = serve(
        tmp_path / "runs", "labels.log", AGELAB_DATA=str(folder), AGELAB_CACHE_DIR=str(cache)
    )
    try:
        page = browser.new_context(viewport={"width": 1400, "height": 1200}).new_page()
        page.goto(url + "/review")
        page.wait_for_selector("h1:has-text('Review')", timeout=120_000)
        wait_idle(page)
        page.get_by_text("Find the labels that look wrong").click()
        page.wait_for_selector("text=look mislabelled", timeout=600_000)
        wait_idle(page)

        def shown() -> str:
            return page.locator("text=this is").first.inner_text()

        assert "this is 1" in shown()
        # The keys act on the page, not inside a form field: take the focus off the toggle first.
        page.locator("h1:has-text('Review')").click()
        page.keyboard.press("ArrowRight")
        page.wait_for_selector("text=this is 2", timeout=60_000)
        page.keyboard.press("ArrowLeft")
        page.wait_for_selector("text=this is 1", timeout=60_000)
        for reason, position in (("age wrong", 2), ("gender wrong", 3), ("not a face", 4)):
            wait_idle(page)
            page.get_by_text(reason, exact=True).click()
            wait_idle(page)
            page.locator("h1:has-text('Review')").click()
            page.keyboard.press("m")
            page.wait_for_selector(f"text=this is {position}", timeout=60_000)
        shot(page, "labels")
        wait_idle(page)
        keys = page.get_by_label("More keys for the run", exact=True)
        keys.fill("model=small_cnn weights=none image_size=32 epochs=1 augment=false crop=none fast=false")
        keys.press("Tab")
        wait_idle(page)
        page.get_by_role("button", name="Launch train exclude=").click()
        page.wait_for_selector("text=Launched", timeout=60_000)
        no_exceptions(page)
        run_dir = next((tmp_path / "runs").glob("small_cnn-*"))
        deadline = time.time() + 900
        while (
            run_status.effective_status(run_dir).get("status") in run_status.ACTIVE and time.time() < deadline
        ):
            time.sleep(3)
        assert run_status.effective_status(run_dir).get("status") == "finished", run_status.log_tail(
            run_dir, 30
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    os.environ["AGELAB_CACHE_DIR"], previous = str(cache), os.environ.get("AGELAB_CACHE_DIR")
    try:
        table = marks.load_marks(folder)
        assert table["reason"].tolist() == ["age wrong", "gender wrong", "not a face"]
        before, _ = splits_with_and_without_marks(folder)
    finally:
        if previous is None:
            os.environ.pop("AGELAB_CACHE_DIR")
        else:
            os.environ["AGELAB_CACHE_DIR"] = previous
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_excluded"] == 3
    assert (
        metrics["n_train"] + metrics["n_val"] == len(before.splits["train"]) + len(before.splits["val"]) - 3
    )
    tested = pd.read_parquet(run_dir / "predictions.parquet")["path"].map(os.path.basename)
    assert sorted(tested) == sorted(before.splits["test"]["file"])
