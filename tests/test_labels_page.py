"""The Labels page on real UTKFace faces: step through the labels that look wrong, mark three with
reasons, and train without them while the test split stays the same."""

from __future__ import annotations

import pandas as pd
from streamlit.testing.v1 import AppTest

from agelab import marks
from agelab.paths import PROJECT_ROOT
from tests.real_data import copy_real_images, splits_with_and_without_marks

PAGE = str(PROJECT_ROOT / "pages" / "labels.py")


def test_step_mark_three_and_train_without_them(utkface_dir, isolated_dirs, monkeypatch):
    folder = isolated_dirs / "utk"
    copy_real_images(utkface_dir, folder, 300, step=70)
    monkeypatch.setenv("AGELAB_DATA", str(folder))
    app = AppTest.from_file(PAGE, default_timeout=600).run()
    assert not app.exception
    next(t for t in app.toggle if t.label == "Find the labels that look wrong").set_value(True).run()
    assert not app.exception, app.exception
    assert any("look mislabelled" in m.value for m in app.markdown)
    shown = []
    for reason in ("age wrong", "gender wrong", "not a face"):
        shown.append(next(m.value for m in app.markdown if m.value.startswith("**Label:**")))
        app.radio[0].set_value(reason).run()
        next(b for b in app.button if b.label == "Mark").click().run()
        assert not app.exception, app.exception
    next(b for b in app.button if b.label == "Previous").click().run()
    assert next(m.value for m in app.markdown if m.value.startswith("**Label:**")) == shown[-1]
    table = marks.load_marks(folder)
    assert table["reason"].tolist() == ["age wrong", "gender wrong", "not a face"]
    before, after = splits_with_and_without_marks(folder)
    used = pd.concat([before.splits["train"], before.splits["val"]])
    assert set(table["file"]) <= set(used["file"])  # only training and validation faces are offered
    assert len(after.splits["train"]) + len(after.splits["val"]) == len(used) - 3
    assert after.splits["test"]["file"].tolist() == before.splits["test"]["file"].tolist()
