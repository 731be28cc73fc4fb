"""agelab dashboard: ``streamlit run app.py`` (or ``make run``)."""

from pathlib import Path

import streamlit as st

from streamlit_setup import keep_models_warm

keep_models_warm()
# As .streamlit/config.toml says, but that file is read only when the server starts in this folder:
# `streamlit run /path/to/app.py` from elsewhere showed the "Deploy" button and the developer menu.
st.set_option("client.toolbarMode", "viewer")
# A shipped file, served from this app: a ":material/...:" page icon is fetched from fonts.gstatic.com
# by the browser, and the app must not reach outside the loopback address it serves on.
ICON = Path(__file__).resolve().parent / "assets" / "icon.png"
st.set_page_config(page_title="agelab", page_icon=str(ICON), layout="wide")

pages = [
    st.Page("pages/dataset.py", title="Dataset", icon=":material/photo_library:", default=True),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/review.py", title="Review", icon=":material/rule:"),
    st.Page("pages/predict.py", title="Predict", icon=":material/photo_camera:"),
]
st.navigation(pages).run()
