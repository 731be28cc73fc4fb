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
