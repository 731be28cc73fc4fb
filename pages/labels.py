"""Labels: the training and validation faces whose label looks wrong, most suspect first, stepped
through one by one and marked with a reason; ``train exclude=`` then leaves the marked faces out."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import streamlit as st

from agelab import marks
from agelab.bins import GROUPS10
from agelab.data import GENDERS, RACES
from agelab.data_sources import change_times
from agelab.label_noise import training_label_issues
from agelab.paths import data_dir
from streamlit_setup import through_app

through_app()

REASONS = ("age wrong", "gender wrong", "not a face", "duplicate", "other")


@st.cache_data(
    show_spinner="Predicting every training face out of fold (features are cached after the first time)..."
)
def label_issues(folders: str, signature: tuple[float, ...]) -> pd.DataFrame:
    return training_label_issues(folders, GROUPS10, log=lambda _: None).table


def describe(row: pd.Series) -> str:
    labels = GROUPS10.labels
    label = f"{row['age']:g} y ({labels[int(GROUPS10.bin_of(row['age']))]}), {GENDERS[int(row['gender'])]}"
    model_gender = "Female" if row["model_female"] >= 0.5 else "Male"
    return (
        f"**Label:** {label}, {RACES.get(int(row['race']), 'Unknown')} · split `{row['split']}` · "
        f"source `{row.get('source', '')}`  \n"
        f"**Out-of-fold model:** {labels[int(row['model_bin'])]}, {model_gender} "
        f"({max(row['model_female'], 1 - row['model_female']):.0%})  \n"
        f"**Looks wrong:** {row['suspect'] or 'nothing (past the suspects)'} · label quality {row['quality']:.2f}"
    )


st.title("Labels")
st.caption(
    "Faces of the training and validation splits whose label looks wrong, most suspect first: each is "
    "predicted by linear heads that never saw it (5 folds over the frozen backbone's features), and a label "
    "is suspect where that prediction confidently says another gender, or an age group two or more away. "
    "The test split is never shown here: it stays as it is, so that every run is scored on the same faces."
)
folder = st.text_input(
    "Dataset folder",
    st.session_state.get("data_folder", str(data_dir())),
    key="lb_folder",
    help="One folder or several, comma-separated, as data= takes them",
)
if not st.toggle(
    "Find the labels that look wrong",
    key="lb_on",
    help="The first time takes minutes: every face is read once",
):
    st.info("Turn on the finder to review this data's training labels.", icon=":material/search:")
    st.stop()
try:
    table = label_issues(folder, change_times(folder))
except (OSError, ValueError) as err:
    st.error(str(err))
    st.stop()
suspects = table[table["suspect"] != ""].reset_index(drop=True)
if suspects.empty:
    st.success("No label looks wrong.", icon=":material/check:")
    st.stop()

position = min(int(st.session_state.get("lb_position", 0)), len(suspects) - 1)
row = suspects.iloc[position]
image_folder = os.path.dirname(row["path"])
marked = marks.load_marks(image_folder).set_index("file")["reason"].to_dict()
st.markdown(
    f"**{len(suspects):,}** of {len(table):,} faces look mislabelled; this is **{position + 1}** "
    f"({len(marked):,} marked in `{Path(image_folder).name}`). Keys: **Left**/**Right** step, **M** marks."
)
left, middle, right = st.columns([2, 2, 3])
left.image(row["path"], caption="the stored file", width="stretch")
if isinstance(row.get("input"), str) and os.path.exists(row["input"]):
    middle.image(row["input"], caption="the aligned crop the model sees", width="stretch")
right.markdown(describe(row))
reason = right.radio("Reason", REASONS, horizontal=True, key=f"lb_reason_{position}")
file = os.path.basename(row["path"])
if file in marked:
    right.caption(f":material/flag: Marked: {marked[file]}")

b1, b2, b3, b4, _ = st.columns([1, 1, 1, 1, 3])
if b1.button("Previous", shortcut="Left", icon=":material/chevron_left:", disabled=position == 0):
    st.session_state["lb_position"] = position - 1
    st.rerun()
if b2.button(
    "Next", shortcut="Right", icon=":material/chevron_right:", disabled=position >= len(suspects) - 1
):
    st.session_state["lb_position"] = position + 1
    st.rerun()
if b3.button("Mark", shortcut="M", icon=":material/flag:", type="primary"):
    try:
        marks.set_mark(image_folder, row["path"], reason=reason)
    except (OSError, ValueError) as err:
        st.error(marks.mark_failure(row["path"], err))
    else:
        st.session_state["lb_position"] = min(position + 1, len(suspects) - 1)
        st.rerun()
if b4.button("Unmark", icon=":material/flag_circle:", disabled=file not in marked):
    marks.set_mark(image_folder, row["path"], marked=False)
    st.rerun()

path = marks.marks_path(image_folder)
st.caption(f"Marks are kept in `{path}`. Leave them out of training and validation with:")
st.code(f"python -m agelab train data={folder} exclude={path}", language="bash")
