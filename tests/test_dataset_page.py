from streamlit.testing.v1 import AppTest

from agelab.paths import PROJECT_ROOT


def test_dataset_page_shows_real_figures_and_quality_panel(utkface_dir, isolated_dirs, monkeypatch):
    monkeypatch.setenv("AGELAB_DATA", str(utkface_dir))
    at = AppTest.from_file(str(PROJECT_ROOT / "pages" / "dataset.py"), default_timeout=120).run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert (
        metrics["Files"] == "22,162" and metrics["Malformed"] == "9" and metrics["Duplicate groups"] == "334"
    )
    assert len(at.get("plotly_chart")) >= 7
    assert at.expander[0].label.startswith("Data quality: 9 malformed names")
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
