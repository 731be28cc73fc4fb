"""The Review page with a damaged saved evaluation, a garbage ``marks.csv``, and a mark that cannot be
saved: each is said in one sentence naming the file, and the page goes on."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from agelab import marks
from agelab.commands.evaluate import cli as evaluate_cli
from agelab.paths import PROJECT_ROOT
from tests.fault_helpers import fill, small_tmpfs
from tests.predict_helpers import save_contract_model
from tests.real_data import copy_real_images

PAGE = str(PROJECT_ROOT / "pages" / "review.py")


def evaluated(tmp_path: Path, utkface_dir: Path, name: str, count: int = 6) -> tuple[Path, Path]:
    """A folder of real images evaluated by a small contract model: the folder and the saved table."""
    data = tmp_path / name
    copy_real_images(utkface_dir, data, count, step=1500)
    model = save_contract_model(tmp_path / f"model-{name}", stem=name)
    assert evaluate_cli(["--model", str(model), "--data", str(data), "--no-detect"]) == 0
    saved = next((tmp_path / "runs" / "evaluations").glob(f"{name}-on-{name}*.parquet"))
    return data, saved


@pytest.fixture
def review_dirs(isolated_dirs, monkeypatch):
    # No shipped model: only the evaluations made here are listed.
    monkeypatch.setenv("AGELAB_MODELS_DIR", str(isolated_dirs / "models"))
    return isolated_dirs


def open_page() -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=120)
    app.session_state["rv_view"] = "Test-split mistakes"  # past the opening view, the training labels
    app.run()
    assert not app.exception, app.exception
    return app


def test_an_evaluation_whose_bins_name_no_scheme_is_named_and_the_others_still_open(
    review_dirs, utkface_dir, capsys
):
    evaluated(review_dirs, utkface_dir, "good")
    _, damaged = evaluated(review_dirs, utkface_dir, "bad")
    summary = damaged.with_suffix(".json")
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "bins": "garbage"}))
    os.utime(damaged)  # the newest, so the page opens it first
    capsys.readouterr()
    app = open_page()
    errors = [e.value for e in app.error]
    assert any(str(summary) in e and 'bins "garbage" is not a bin scheme' in e for e in errors), errors
    app.selectbox(key="rv_source").set_value("evaluation: good-on-good").run()
    assert not app.exception, app.exception
    assert not app.error and any(m.label == "Images" and m.value == "6" for m in app.metric)
    app.selectbox(key="rv_other").set_value("evaluation: bad-on-bad").run()  # compared with it
    assert not app.exception, app.exception
    assert any("garbage" in e.value for e in app.error)


def test_a_garbage_marks_file_is_named_and_the_gallery_still_shows(review_dirs, utkface_dir):
    data, _ = evaluated(review_dirs, utkface_dir, "good")
    path = marks.marks_path(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xfe\x00garbage\x00" * 50)
    app = open_page()
    assert any(str(path) in w.value for w in app.warning), [w.value for w in app.warning]
    assert len([c for c in app.checkbox if c.key and c.key.startswith("rv_mark_")]) == 6
    first = next(c for c in app.checkbox if c.key and c.key.startswith("rv_mark_"))
    first.check().run()  # marking on top of a garbage file: said, not crashed, nothing overwritten
    assert not app.exception, app.exception
    assert any("was not saved" in e.value for e in app.error), [e.value for e in app.error]
    assert path.read_bytes() == b"\xff\xfe\x00garbage\x00" * 50


@pytest.fixture
def small_cache(review_dirs, monkeypatch):
    """The caches (where marks are kept) on a 1 MB tmpfs, which the test fills."""
    with small_tmpfs(review_dirs / "small") as mount:
        monkeypatch.setenv("AGELAB_CACHE_DIR", str(mount))
        yield mount


@pytest.mark.privileged
def test_marking_a_face_on_a_full_disk_says_so_and_the_page_goes_on(small_cache, utkface_dir):
    data, _ = evaluated(small_cache.parent, utkface_dir, "good")
    app = open_page()
    fill(small_cache)
    first = next(c for c in app.checkbox if c.key and c.key.startswith("rv_mark_"))
    first.check().run()
    assert not app.exception, app.exception
    errors = [e.value for e in app.error]
    assert any("was not saved" in e and "the disk is full" in e for e in errors), errors
    assert not next(c for c in app.checkbox if c.key == first.key).value  # still unmarked, as on disk
    assert marks.load_marks(data).empty


def test_a_nearly_black_and_a_tiny_face_are_flagged_on_their_tiles(review_dirs, utkface_dir):
    import numpy as np
    from PIL import Image

    data, _ = evaluated(review_dirs, utkface_dir, "good")
    faces = sorted(data.iterdir())
    dark = np.asarray(Image.open(faces[0])).astype(np.float32) * 0.05
    Image.fromarray(dark.astype(np.uint8)).save(faces[0], quality=95)  # the same file, in the dark
    Image.open(faces[1]).resize((20, 20)).save(faces[1], quality=95)
    model = save_contract_model(review_dirs / "model-flags", stem="flags")
    assert evaluate_cli(["--model", str(model), "--data", str(data), "--no-detect"]) == 0
    app = open_page()
    app.selectbox(key="rv_source").set_value("evaluation: flags-on-good").run()
    warnings = [c.value for c in app.caption if ":material/warning:" in c.value]
    assert any(w.startswith(":orange[:material/warning: Nearly black") for w in warnings), warnings
    assert any("Tiny (20 x 20 px" in w for w in warnings), warnings
    assert len([w for w in warnings if "may mean nothing" in w]) >= 2
