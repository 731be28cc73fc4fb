"""The Train page through Streamlit's AppTest, launching a real run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from agelab import run_display, run_status, runs
from agelab.launchers import LocalLauncher
from agelab.paths import PROJECT_ROOT
from agelab.training.devices import gpu_status
from tests.real_data import copy_real_images

PAGE = str(PROJECT_ROOT / "pages" / "train.py")


@pytest.fixture
def small_data(utkface_dir, tmp_path) -> Path:
    folder = tmp_path / "utk"
    copy_real_images(utkface_dir, folder, 240, step=80)
    return folder


def widgets(app: AppTest, kind: str) -> dict:
    return {w.label: w for w in getattr(app, kind)}


def fill_form(app: AppTest, data: Path, **choices) -> None:
    widgets(app, "selectbox")["Model"].set_value(choices.get("model", "baseline_cnn"))
    numbers = widgets(app, "number_input")
    numbers["Image size"].set_value(64)
    numbers["Epochs"].set_value(1)
    numbers["Batch size"].set_value(32)
    widgets(app, "checkbox")["Fast mode"].set_value(False)
    widgets(app, "text_input")["Dataset folder"].set_value(str(data))
    widgets(app, "text_input")["Run name"].set_value("page")


def test_page_without_runs_shows_the_device_and_an_empty_state(isolated_dirs):
    app = AppTest.from_file(PAGE, default_timeout=30).run()
    assert not app.exception
    texts = [e.value for e in app.info] + [e.value for e in app.success]
    assert gpu_status()[1] in texts  # the device line itself, GPU or CPU
    assert any("No runs yet" in t for t in texts)


def test_a_bad_config_is_rejected_on_the_page(isolated_dirs, small_data):
    app = AppTest.from_file(PAGE, default_timeout=30).run()
    fill_form(app, small_data)
    # The Weights field is off for baseline_cnn; typed as a key, the config is still checked.
    widgets(app, "text_input")["More keys"].set_value("weights=imagenet")
    app.button[0].click().run()
    assert any("baseline_cnn has no pretrained weights" in e.value for e in app.error)
    assert runs.list_runs() == []


def test_balance_strength_without_class_weights_is_rejected_on_the_page(isolated_dirs, small_data):
    app = AppTest.from_file(PAGE, default_timeout=30).run()
    fill_form(app, small_data)
    widgets(app, "text_input")["More keys"].set_value("rebalance_power=0.5")
    app.button[0].click().run()
    assert any("rebalance_power=0.5" in e.value and "rebalance=class_weights" in e.value for e in app.error)
    assert runs.list_runs() == []


def test_fields_that_do_not_apply_are_off_until_their_choice_is_made(isolated_dirs):
    app = AppTest.from_file(PAGE, default_timeout=30).run()
    selects, numbers = widgets(app, "selectbox"), widgets(app, "number_input")
    selects["Model"].set_value("small_cnn")
    selects["Age bins"].set_value("groups10")
    selects["Rebalance"].set_value("none")
    numbers["Fine-tune depth (layers)"].set_value(0)
    app.run()

    def disabled() -> set[str]:
        found = [*app.selectbox, *app.text_input, *app.checkbox, *app.number_input]
        return {w.label for w in found if w.disabled}

    assert {"Custom bin edges", "Fine-tune epochs", "Weights", "Width (alpha)"} <= disabled()
    assert {"Balance strength", "Balance bin x ethnicity"} <= disabled()
    widgets(app, "selectbox")["Model"].set_value("mobilenet_v2")
    widgets(app, "selectbox")["Age bins"].set_value("custom")
    widgets(app, "selectbox")["Rebalance"].set_value("class_weights")
    widgets(app, "number_input")["Fine-tune depth (layers)"].set_value(20)
    app.run()
    assert not app.exception
    assert not disabled() & {"Custom bin edges", "Fine-tune epochs", "Weights", "Width (alpha)",
                             "Balance strength", "Balance bin x ethnicity"}  # fmt: skip


def test_launch_from_the_page_runs_to_finished(isolated_dirs, small_data):
    app = AppTest.from_file(PAGE, default_timeout=30).run()
    fill_form(app, small_data)
    widgets(app, "number_input")["Mixup (alpha)"].set_value(0.3)
    app.button[0].click().run()
    assert not app.exception
    assert any("Launched" in s.value for s in app.success), [e.value for e in app.error]
    run_dir = isolated_dirs / "runs" / "page-1"
    assert json.loads((run_dir / "config.json").read_text())["mixup"] == 0.3  # the form's value, sent
    deadline = time.time() + 300
    while runs.load_run(run_dir).state in run_status.ACTIVE and time.time() < deadline:
        time.sleep(1)
    run = runs.load_run(run_dir)
    assert run.state == "finished", run.log()
    assert (run_dir / "model.keras").exists() and (run_dir / "predictions.parquet").exists()
    app.run()
    assert not app.exception
    assert any("`finished`" in m.value for m in app.markdown)
    table = app.dataframe[0].value
    assert table.loc[0, "run"] == "page-1" and table.loc[0, "status"] == "finished"
    assert 0 <= table.loc[0, "bin_acc"] <= 1


def test_live_view_shows_progress_and_stops_a_run(isolated_dirs, small_data):
    run_dir = LocalLauncher().submit(
        {"model": "baseline_cnn", "weights": "none", "image_size": 64, "epochs": 200, "batch_size": 8,
         "data": str(small_data), "name": "live"}
    )  # fmt: skip
    deadline = time.time() + 240
    while runs.load_run(run_dir).progress.get("steps_done", 0) < 2 and time.time() < deadline:
        time.sleep(0.5)
    app = AppTest.from_file(PAGE, default_timeout=30).run()
    assert not app.exception
    bars = app.get("progress")
    assert (
        bars
        and "epoch" in bars[0].proto.text
        and "batch" in bars[0].proto.text
        and "ETA" in bars[0].proto.text
    )
    assert any("`running`" in m.value for m in app.markdown)
    app.button(key="stop-live-1").click().run()
    deadline = time.time() + 120
    while runs.load_run(run_dir).state in run_status.ACTIVE and time.time() < deadline:
        time.sleep(0.5)
    assert runs.load_run(run_dir).state == "stopped"
    app.run()
    assert any("`stopped`" in m.value for m in app.markdown)


def select_rows(app: AppTest, rows: list[int]) -> None:
    app.session_state["runs_table"] = {"selection": {"rows": rows, "columns": [], "cells": []}}
    app.run()


def test_selected_runs_overlay_open_and_delete(isolated_dirs, small_data):
    from agelab.training import verb as training

    config = {
        "model": "baseline_cnn",
        "image_size": 64,
        "epochs": 2,
        "batch_size": 32,
        "data": str(small_data),
    }
    first = training.train({**config, "name": "a"})
    second = training.train({**config, "name": "b", "learning_rate": 3e-4})
    app = AppTest.from_file(PAGE, default_timeout=30).run()
    loss = json.loads(app.get("plotly_chart")[0].proto.spec)
    assert loss["layout"]["yaxis"]["title"]["text"] == "loss"
    assert {t["name"] for t in loss["data"]} == {"training loss", "validation loss"}
    assert loss["layout"]["xaxis"]["dtick"] == 1 and loss["layout"]["xaxis"]["tickformat"] == "d"
    select_rows(app, [0, 1])
    assert not app.exception
    compare = next(s for s in app.selectbox if s.label == "Compare")
    assert compare.value == "val_age_bin_acc" or compare.value.startswith("val_")
    expanders = [e.label for e in app.expander]
    assert f"{second.name}: finished" in expanders and f"{first.name}: finished" in expanders
    shown = [json.loads(j.proto.body) for j in app.json]
    assert any(config.get("learning_rate") == 3e-4 for config in shown)
    delete = next(b for b in app.button if b.label == "Delete selected")
    assert delete.disabled  # nothing is deleted before the confirmation
    next(c for c in app.checkbox if c.label.startswith("Yes, delete")).check().run()
    next(b for b in app.button if b.label == "Delete selected").click().run()
    assert not first.exists() and not second.exists()
    assert runs.list_runs() == []


def test_a_recipe_fills_the_form_with_what_it_will_run(isolated_dirs, small_data):
    app = AppTest.from_file(PAGE, default_timeout=30).run()
    app.selectbox(key="tr_recipe").set_value("quick").run()
    selects, numbers = widgets(app, "selectbox"), widgets(app, "number_input")
    assert (selects["Model"].value, selects["Width (alpha)"].value, numbers["Image size"].value) == (
        "mobilenet_v2",
        0.35,
        112,
    )
    assert numbers["Epochs"].value == 10 and widgets(app, "checkbox")["Fast mode"].value is True
    # What the form shows is what runs: change a field and launch (validation fails on no data).
    numbers["Epochs"].set_value(3)
    widgets(app, "text_input")["Dataset folder"].set_value(str(isolated_dirs / "nowhere"))
    app.button[0].click().run()
    assert any("no such folder" in e.value for e in app.error)


def test_progress_text_and_log_read_cleanly(tmp_path):
    features = {"stage": "features", "epoch": 0, "epochs_total": 0, "batch": 5, "steps": 20, "eta_s": 12.0}
    assert run_display.progress_text(features) == "extracting features: batch 5/20, ETA 12s"
    first = {"stage": "heads", "epoch": 1, "epochs_total": 3, "batch": 1, "steps": 9, "eta_s": None}
    assert run_display.progress_text(first) == "heads: epoch 1/3, batch 1/9, ETA estimating..."
    (tmp_path / "log.txt").write_text(
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1796215790.135733   16465 port.cc:153] oneDNN custom operations are on.\n"
        "run runs/x-1 on CPU\n"
    )
    assert run_status.log_tail(tmp_path) == "run runs/x-1 on CPU"


def test_the_page_picks_sources_and_never_offers_an_evaluation_only_folder(
    isolated_dirs, small_data, monkeypatch
):
    from tests.real_data import SHARED, require

    require(SHARED / "data" / "aaf-train" / "labels.csv", "All-Age-Faces training labels")
    monkeypatch.setenv("AGELAB_MIRROR", str(SHARED))
    app = AppTest.from_file(PAGE, default_timeout=60).run()
    picker = next(w for w in app.multiselect if w.label == "More sources")
    offered = {Path(option).name for option in picker.options}
    assert "aaf-train" in offered and "aaf-dev" not in offered  # aaf-dev's SOURCE.md: evaluation only
    fill_form(app, small_data)
    picker = next(w for w in app.multiselect if w.label == "More sources")
    picker.set_value([o for o in picker.options if Path(o).name == "aaf-train"])
    widgets(app, "text_input")["Source weights"].set_value("1,2")
    widgets(app, "number_input")["Max images (0: all)"].set_value(60)
    app.button[0].click().run()
    assert any("Launched" in s.value for s in app.success), [e.value for e in app.error]
    run_dir = isolated_dirs / "runs" / "page-1"
    config = json.loads((run_dir / "config.json").read_text())
    assert [Path(p).name for p in config["data"].split(",")] == [small_data.name, "aaf-train"]
    assert config["source_weights"] == "1,2"
    deadline = time.time() + 600
    while runs.load_run(run_dir).state in run_status.ACTIVE and time.time() < deadline:
        time.sleep(2)
    assert runs.load_run(run_dir).state == "finished", (run_dir / "log.txt").read_text()[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["sources"]) == {small_data.name, "aaf-train"}
    # The comparison's rows per source, and Review's "source" slice, from the run's own files.
    rows = run_display.source_rows([runs.load_run(run_dir)])
    assert rows["source"].tolist() == list(metrics["sources"]) and rows["images"].sum() == metrics["n_test"]
    from agelab.evaluation.metrics import slice_metrics
    from agelab.evaluation.predictions import with_derived_columns

    prepared = with_derived_columns(pd.read_parquet(run_dir / "predictions.parquet"), config["bins"])
    by_source = slice_metrics(prepared, ["source"], n_boot=50).set_index("group")["n"]
    assert by_source.to_dict() == {name: m["n_test"] for name, m in metrics["sources"].items()}


def test_an_evaluation_only_folder_is_refused_as_training_data(isolated_dirs):
    from agelab.config import ConfigError, checked_config
    from tests.real_data import SHARED, require

    dev = require(SHARED / "data" / "aaf-dev" / "labels.csv", "aaf-dev labels").parent
    with pytest.raises(ConfigError, match="for evaluation only"):
        checked_config({"data": str(dev)})


def test_the_face_recipe_fills_the_form_with_its_own_size(isolated_dirs):
    app = AppTest.from_file(PAGE, default_timeout=60).run()
    widgets(app, "selectbox")["Recipe"].set_value("face").run()
    assert not app.exception
    assert widgets(app, "selectbox")["Model"].value == "face_mobilenet"
    assert widgets(app, "number_input")["Image size"].value == 128


def test_a_run_rescored_on_the_shared_test_split_shows_those_scores(isolated_dirs, small_data, monkeypatch):
    """A run trained on part of the data has its own, smaller test split; scored on the shared one,
    the runs table shows the shared scores and the same test-set identity as a run of all the data."""
    from agelab.commands import rescore
    from agelab.evaluation import shared_split
    from agelab.saved_split import load_dataset
    from agelab.training.verb import train

    monkeypatch.setenv("AGELAB_DATA", str(small_data))
    run_dir = train({"model": "small_cnn", "weights": "none", "image_size": 32, "epochs": 1, "augment": False,
                     "crop": "none", "data": str(small_data), "max_images": 120, "name": "part"})  # fmt: skip
    shared_test = load_dataset().query("split == 'test'")
    own = runs.runs_table(runs.list_runs())
    assert own.loc[0, "test_images"] < len(shared_test)
    assert rescore.cli([str(run_dir)]) == 0
    table = shared_split.with_shared_scores(own)
    assert table.loc[0, "scored_on_split"] == "shared test split"
    assert table.loc[0, "test_images"] == len(shared_test)
    assert table.loc[0, "test_set"] == shared_split.test_set_id(shared_test)
    saved = pd.read_parquet(shared_split.shared_out(run_dir.name))
    assert sorted(saved["path"].map(lambda p: Path(p).name)) == sorted(shared_test["file"])
