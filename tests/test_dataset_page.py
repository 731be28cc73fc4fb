import json

import pytest
from streamlit.testing.v1 import AppTest

from agelab import palette
from agelab.paths import PROJECT_ROOT
from tests.real_data import copy_real_images


def test_dataset_page_shows_real_figures_and_quality_panel(utkface_dir, isolated_dirs, monkeypatch):
    monkeypatch.setenv("AGELAB_DATA", str(utkface_dir))
    at = AppTest.from_file(str(PROJECT_ROOT / "pages" / "dataset.py"), default_timeout=120).run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert (
        metrics["Files"] == "22,162" and metrics["Malformed"] == "9" and metrics["Duplicate groups"] == "334"
    )
    assert len(at.get("plotly_chart")) >= 7
    assert at.expander[0].label.startswith("Data quality: 9 files left out")
    assert "contains a space" in at.dataframe[0].value["reason"].tolist()

    at.sidebar.selectbox[0].set_value("equal12").run()  # the bin scheme drives the charts
    assert not at.exception
    at.radio[0].set_value("Heatmap").run()
    assert not at.exception and len(at.get("plotly_chart")) >= 7


def test_bad_custom_edges_show_an_error(utkface_dir, isolated_dirs, monkeypatch):
    monkeypatch.setenv("AGELAB_DATA", str(utkface_dir))
    at = AppTest.from_file(str(PROJECT_ROOT / "pages" / "dataset.py"), default_timeout=120).run()
    at.sidebar.selectbox[0].set_value("custom").run()
    at.sidebar.text_input[1].set_value("0,30,20").run()
    assert "strictly increasing" in at.error[0].value


def chart_specs(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def test_charts_and_tables_speak_words_and_share_one_palette(utkface_dir, isolated_dirs, monkeypatch):
    monkeypatch.setenv("AGELAB_DATA", str(utkface_dir))
    at = AppTest.from_file(str(PROJECT_ROOT / "pages" / "dataset.py"), default_timeout=120).run()
    specs = chart_specs(at)
    titles = json.dumps(
        [[s["layout"].get(axis, {}).get("title") for axis in ("xaxis", "yaxis", "legend")] for s in specs]
    )
    for raw in ("gender_name", "race_name", "bin_label"):
        assert raw not in titles, titles
    colors = {}
    for spec in specs:
        for trace in spec["data"]:
            if trace.get("type") == "bar" and trace.get("name") in (*palette.GENDER, *palette.ETHNICITY):
                colors.setdefault(trace["name"], set()).add(trace["marker"]["color"])
    assert colors["Female"] == {palette.GENDER["Female"]} and colors["Male"] == {palette.GENDER["Male"]}
    assert colors["Indian"] == {palette.ETHNICITY["Indian"]}
    for spec in specs:  # the genders in one order on every chart
        names = [t.get("name") for t in spec["data"] if t.get("name") in palette.GENDER]
        assert names in ([], list(palette.GENDER_ORDER)), names
    next(r for r in at.radio if r.label == "Show as").set_value("Heatmap").run()
    heatmaps = [t for s in chart_specs(at) for t in s["data"] if t.get("type") == "heatmap"]
    assert [list(t["x"]) for t in heatmaps if set(t["x"]) <= set(palette.GENDER)] == [
        list(palette.GENDER_ORDER)
    ]

    dups = next(d.value for d in at.dataframe if "labels disagree" in d.value.columns)
    assert set(dups["gender"]) <= {"Male", "Female", ""} and "None" not in set(dups["malformed name"])
    assert set(dups["labels disagree"]) == {"yes"}  # "only conflicting groups" is on by default


def test_the_dataset_folder_is_kept_when_the_page_changes(utkface_dir, isolated_dirs, monkeypatch):
    monkeypatch.setenv("AGELAB_DATA", str(utkface_dir))
    small = isolated_dirs / "small"
    copy_real_images(utkface_dir, small, 40, step=500)
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=120).run()
    at.sidebar.text_input(key="dataset_folder_input").set_value(str(small)).run()
    assert {m.label: m.value for m in at.metric}["Files"] == "40"
    at.switch_page("pages/train.py").run()
    assert not at.exception
    assert next(t for t in at.text_input if t.label == "Dataset folder").value == str(small)
    at.switch_page("pages/dataset.py").run()
    assert at.sidebar.text_input(key="dataset_folder_input").value == str(small)
    assert {m.label: m.value for m in at.metric}["Files"] == "40"


def test_rebalancing_preview_takes_the_balance_strength(utkface_dir, isolated_dirs, monkeypatch):
    monkeypatch.setenv("AGELAB_DATA", str(utkface_dir))
    at = AppTest.from_file(str(PROJECT_ROOT / "pages" / "dataset.py"), default_timeout=120).run()
    strength = next(s for s in at.slider if s.label == "Balance strength")
    assert strength.disabled  # only class weights take it
    next(s for s in at.selectbox if s.label == "Strategy").set_value("class_weights").run()

    def spread() -> float:
        """The heaviest face's weight over the lightest's, from the chart's title."""
        title = chart_specs(at)[-1]["layout"]["title"]["text"]
        assert "class_weights" in title, title
        lightest, heaviest = title.split("weighs ")[1].split(" the mean")[0].split(" to ")
        return float(heaviest.rstrip("x")) / float(lightest.rstrip("x"))

    full = spread()
    assert full > 5  # UTKFace's bins are far from balanced
    next(s for s in at.slider if s.label == "Balance strength").set_value(0.5).run()
    assert not at.exception
    # weight = share ** -power: half the power is the square root of the spread of weights.
    assert spread() == pytest.approx(full**0.5, rel=0.05)


def test_a_clean_folder_without_a_malformed_name_renders(utkface_dir, isolated_dirs, monkeypatch):
    clean = isolated_dirs / "clean"
    copy_real_images(utkface_dir, clean, 40, step=500)
    monkeypatch.setenv("AGELAB_DATA", str(clean))  # by AGELAB_DATA
    at = AppTest.from_file(str(PROJECT_ROOT / "pages" / "dataset.py"), default_timeout=120).run()
    assert not at.exception, at.exception
    assert {m.label: m.value for m in at.metric}["Malformed"] == "0"
    monkeypatch.setenv("AGELAB_DATA", str(utkface_dir))  # and typed into the page
    at = AppTest.from_file(str(PROJECT_ROOT / "pages" / "dataset.py"), default_timeout=120).run()
    at.sidebar.text_input(key="dataset_folder_input").set_value(str(clean)).run()
    assert not at.exception, at.exception
    assert {m.label: m.value for m in at.metric}["Files"] == "40"


def test_several_sources_show_each_source_and_the_mix(utkface_dir, isolated_dirs, monkeypatch):
    import shutil

    import pandas as pd

    from tests.real_data import SHARED, require

    aaf = require(SHARED / "data" / "aaf-train" / "labels.csv", "All-Age-Faces training labels").parent
    mine = isolated_dirs / "mine"
    mine.mkdir()
    labels = pd.read_csv(aaf / "labels.csv").iloc[::300]
    for name in labels["file"]:
        shutil.copy2(aaf / name, mine / name)
    labels = pd.concat(
        [labels, pd.DataFrame([{"file": "gone.jpg", "age_low": 3, "age_high": 3, "gender": "male"}])]
    )
    labels.to_csv(mine / "labels.csv", index=False)
    utk = isolated_dirs / "utk"
    copy_real_images(utkface_dir, utk, 40, step=500)
    monkeypatch.setenv("AGELAB_DATA", f"{utk},{mine}")
    at = AppTest.from_file(str(PROJECT_ROOT / "pages" / "dataset.py"), default_timeout=120).run()
    assert not at.exception, at.exception
    sources = next(d.value for d in at.dataframe if "kind" in d.value.columns)
    assert sources["source"].tolist() == ["utk", "mine"] and sources["kind"].tolist() == [
        "utkface",
        "labelled",
    ]
    assert sources["kept"].tolist() == [40, len(labels) - 1]
    left_out = next(
        d.value for d in at.dataframe if "reason" in d.value.columns and "source" in d.value.columns
    )
    assert left_out.set_index("file").loc["gone.jpg", "source"] == "mine"
    specs = chart_specs(at)
    assert any("by source" in s["layout"]["title"]["text"] for s in specs)
    ethnicity = next(s for s in specs if s["layout"]["title"]["text"].startswith("Ethnicity"))
    assert "Unknown" in {trace["name"] for trace in ethnicity["data"]}
