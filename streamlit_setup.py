"""Process-wide Streamlit settings for the dashboard, applied by app.py and by the pages that load
Keras (a page opened by URL on a fresh server runs once without app.py, because pages/ exists)."""

from streamlit.runtime.scriptrunner import script_runner


def _keep_keras_session() -> None:
    """Streamlit's post-run cleanup, minus ``keras.backend.clear_session()``.

    Streamlit calls it after every script run, fragment reruns included. With TensorFlow loaded it
    held the GIL for about 0.18 s, and the next prediction retraced its compiled call (0.3 s): with
    the live webcam's once-a-second statistics the video fell from 29 to 13 fps. Our models live in
    ``st.cache_resource`` and must stay usable across runs, so there is nothing to clear.
    """


def keep_models_warm() -> None:
    # Private API, so only where it exists; without it the app still works, only slower.
    if hasattr(script_runner, "_clean_problem_modules"):
        script_runner._clean_problem_modules = _keep_keras_session
