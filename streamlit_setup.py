"""Process-wide Streamlit settings for the dashboard, applied by app.py and by the pages that load
Keras (a page opened by URL on a fresh server runs once without app.py, because pages/ exists).

Everything this module turns off, for the whole server process:

- :func:`keep_models_warm` replaces Streamlit's private post-run cleanup
  (``script_runner._clean_problem_modules``) with a no-op. That cleanup does two things, and both
  stop: ``keras.backend.clear_session()`` (which we want gone, see :func:`_keep_keras_session`) and
  ``matplotlib.pyplot.close("all")``. Losing the second is harmless here: no page, and nothing in
  agelab, draws with pyplot (the charts are Plotly), so there are no pyplot figures to leak. A page
  that starts drawing with ``plt`` must close its own figures (``plt.close(fig)``) or pass them to
  ``st.pyplot(fig, clear_figure=True)``.
- :func:`through_app` clears ``PagesManager.uses_pages_directory``: Streamlit's folder mode, in which
  each file in ``pages/`` runs on its own with an automatic sidebar menu, stops for every session;
  pages run only inside app.py's ``st.navigation``.

Both reach into Streamlit internals (checked against streamlit 1.67, pinned in requirements.txt).
Where they are missing, both are skipped: the app still works, only slower (the Keras session is
cleared after every run) or without app.py's layout on a page opened first by its URL.
"""

from streamlit.runtime.scriptrunner import script_runner


def _keep_keras_session() -> None:
    """Streamlit's post-run cleanup, minus ``keras.backend.clear_session()`` (and minus its
    ``plt.close("all")``, which no page needs; see the module docstring).

    Streamlit calls it after every script run, fragment reruns included. With TensorFlow loaded it
    held the GIL for about 0.18 s, and the next prediction retraced its compiled call (0.3 s): with
    the live webcam's once-a-second statistics the video fell from 29 to 13 fps. Our models live in
    ``st.cache_resource`` and must stay usable across runs, so there is nothing to clear.
    """


def keep_models_warm() -> None:
    # Private API, so only where it exists; without it the app still works, only slower.
    if hasattr(script_runner, "_clean_problem_modules"):
        script_runner._clean_problem_modules = _keep_keras_session


def through_app() -> None:
    """Run this page through app.py's navigation, even when it is opened first by its URL.

    Because ``pages/`` exists beside app.py, Streamlit starts in its old folder mode: until some
    session runs app.py (and so ``st.navigation``), a page opened by URL (``/review``) runs alone,
    without app.py's page config and menu. Called at the top of every page: in that mode it switches
    the server to app.py's navigation and reruns, so the same URL now runs app.py, which runs this
    page with the wide layout and the named, iconed menu. Under app.py it does nothing.
    """
    import streamlit as st
    from streamlit.runtime.pages_manager import PagesManager

    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False  # what st.navigation itself sets, process-wide
        st.rerun()
