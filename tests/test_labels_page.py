"""Review's opening view on real UTKFace faces: the training labels that look wrong, stepped through,
three marked with reasons, and a run launched without them whose test split stays the same."""

from __future__ import annotations

import json
import time

import pandas as pd
from streamlit.testing.v1 import AppTest

from agelab import marks, run_status
from agelab.paths import PROJECT_ROOT
from tests.real_data import copy_real_images, splits_with_and_without_marks

PAGE = str(PROJECT_ROOT / "pages" / "review.py")


def shown(app: AppTest) -> str:
    return next(m.value for m in app.markdown if m.value.startswith("**Label:**"))


def test_review_opens_on_the_training_labels_mark_three_and_launch_without_them(
    utkface_dir, isolated_dirs, monkeypatch
):
    folder = isolated_dirs / "utk"
    copy_real_images(utkface_dir, folder, 300, step=70)
    monkeypatch.setenv("AGELAB_DATA", str(folder))
    app = AppTest.from_file(PAGE, default_timeout=600).run()
    assert not app.exception, app.exception
    assert app.get("button_group")[0].value == "Labels that look wrong (training data)"
    next(t for t in app.toggle if t.label == "Find the labels that look wrong").set_value(True).run()
    assert not app.exception, app.exception
    assert any("look mislabelled" in m.value for m in app.markdown)
    seen = []
    for reason in ("age wrong", "gender wrong", "not a face"):
        seen.append(shown(app))
        next(r for r in app.radio if r.label == "Reason").set_value(reason).run()
        next(b for b in app.button if b.label == "Mark").click().run()
        assert not app.exception, app.exception
    assert shown(app) not in seen  # each mark stepped on to the next suspect
    next(b for b in app.button if b.label == "Previous").click().run()
    assert shown(app) == seen[-1]
    table = marks.load_marks(folder)
    assert table["reason"].tolist() == ["age wrong", "gender wrong", "not a face"]
    in_words = next(d.value for d in app.dataframe if "marked at" in d.value.columns)
    assert set(in_words["gender"]) <= {"Male", "Female"}  # words, not 0/1 codes
    before, after = splits_with_and_without_marks(folder)
    used = pd.concat([before.splits["train"], before.splits["val"]])
    assert set(table["file"]) <= set(used["file"])  # only training and validation faces are offered

    keys = "model=small_cnn weights=none image_size=32 epochs=1 augment=false crop=none fast=false"
    app.text_input(key="lb_run_keys").set_value(keys).run()
    app.button(key="lb_launch").click().run()
    assert not app.exception, app.exception
    assert any("Launched" in s.value for s in app.success), [e.value for e in app.error]
    run_dir = next((isolated_dirs / "runs").glob("small_cnn-*"))
    deadline = time.time() + 900
    while run_status.effective_status(run_dir).get("status") in run_status.ACTIVE and time.time() < deadline:
        time.sleep(2)
    assert run_status.effective_status(run_dir).get("status") == "finished", run_status.log_tail(run_dir, 30)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_excluded"] == 3
    assert metrics["n_train"] + metrics["n_val"] == len(used) - 3
    tested = pd.read_parquet(run_dir / "predictions.parquet")["path"].map(lambda p: p.rsplit("/", 1)[-1])
    assert sorted(tested) == sorted(before.splits["test"]["file"])
    assert after.splits["test"]["file"].tolist() == before.splits["test"]["file"].tolist()


def test_the_app_hides_the_deploy_button_wherever_it_is_started(isolated_dirs, monkeypatch, tmp_path):
    import streamlit as st

    monkeypatch.chdir(tmp_path)  # not the project folder: .streamlit/config.toml is not read here
    st.set_option("client.toolbarMode", "auto")
    app = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=120).run()
    assert not app.exception, app.exception
    assert st.get_option("client.toolbarMode") == "viewer"  # the front end shows no Deploy in viewer mode
