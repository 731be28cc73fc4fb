"""The entry point: navigation, and the process settings that keep cached models fast."""

import keras
import pytest
from streamlit.runtime.scriptrunner import script_runner
from streamlit.testing.v1 import AppTest

from agelab.paths import PROJECT_ROOT


@pytest.fixture
def clear_session_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts keras.backend.clear_session() calls, with Streamlit's own cleanup restored first."""
    calls: list[int] = []
    monkeypatch.setattr(keras.backend, "clear_session", lambda *a, **k: calls.append(1))

    def streamlit_cleanup() -> None:  # what Streamlit does after every run when keras is loaded
        keras.backend.clear_session()

    monkeypatch.setattr(script_runner, "_clean_problem_modules", streamlit_cleanup)
    return calls


def test_app_runs_pages_without_clearing_the_keras_session(
    utkface_dir, isolated_dirs, monkeypatch, clear_session_calls
):
    monkeypatch.setenv("AGELAB_DATA", str(utkface_dir))
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception
    assert at.title[0].value == "Dataset"  # the default page
    at.run()
    assert clear_session_calls == []


@pytest.mark.parametrize("page", ["predict.py", "review.py"])
def test_keras_pages_keep_the_session_when_opened_without_app(page, isolated_dirs, clear_session_calls):
    # A page opened by URL on a fresh server runs once without app.py (Streamlit's pages/ folder mode).
    AppTest.from_file(str(PROJECT_ROOT / "pages" / page), default_timeout=120).run()
    assert clear_session_calls == []


APP_MENU = {
    "Dataset": ":material/photo_library:",
    "Train": ":material/model_training:",
    "Review": ":material/rule:",
    "Predict": ":material/photo_camera:",
}


@pytest.mark.parametrize("page, title", [("train.py", "Train"), ("predict.py", "Predict")])
def test_a_deep_link_on_a_fresh_server_runs_through_app(page, title, isolated_dirs, monkeypatch):
    """AppTest starts every run like a fresh server (Streamlit's pages/ folder mode, before any
    st.navigation): opening /train or /predict first must still get app.py's menu and layout."""
    monkeypatch.setenv("AGELAB_MODELS_DIR", str(isolated_dirs / "models"))  # Predict: no model, quick
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=120)
    at.switch_page(f"pages/{page}").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == title
    menu = {info.get("page_name"): info.get("icon") for info in at._registered_pages.values()}
    assert menu == APP_MENU  # not "app, dataset, predict, review, train" without icons
