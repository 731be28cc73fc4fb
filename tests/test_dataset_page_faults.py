"""The Dataset page on images that do not decode: the page stays up, shows the faces that do, and names
each file that does not, instead of a raw codec error."""

from __future__ import annotations

import os
from pathlib import Path

from streamlit.testing.v1 import AppTest

from agelab.paths import PROJECT_ROOT
from tests.real_data import copy_real_images


def test_corrupt_images_are_named_and_the_page_stays_up(utkface_dir, isolated_dirs, monkeypatch):
    folder = isolated_dirs / "utk"
    copied = copy_real_images(utkface_dir, folder, 20, step=1000)
    # A valid UTKFace name over bytes that are no image, a real JPEG cut short, and a malformed name
    # over garbage: the first two are sample faces, the last a left-out file the page pictures.
    garbage, truncated = copied[4], copied[9]
    garbage.write_bytes(os.urandom(3000))
    truncated.write_bytes(truncated.read_bytes()[:400])
    malformed = folder / "not a utkface name.jpg"
    malformed.write_bytes(b"\xff\xd8\xff\xe0 no JPEG follows")
    monkeypatch.setenv("AGELAB_DATA", str(folder))

    at = AppTest.from_file(str(PROJECT_ROOT / "pages" / "dataset.py"), default_timeout=120).run()
    assert not at.exception, at.exception
    said = " ".join(w.value for w in at.warning)
    for bad in (garbage, truncated, malformed):
        assert Path(bad).name in said, said
    assert "Traceback" not in said and "cannot identify" not in said
    assert len(at.get("image")) >= 1  # the faces that decode are still shown
    assert at.metric and at.metric[0].value == "21"
