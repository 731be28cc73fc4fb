"""Review's opening view: the training and validation faces whose label looks wrong, most suspect
first, stepped through with the keyboard and marked with a reason; then a run without them."""

from __future__ import annotations

import os

import pandas as pd
import streamlit as st

from agelab import launchers, marks
from agelab.bins import GROUPS10
from agelab.config import ConfigError, parse_overrides
from agelab.data import GENDERS, RACES
from agelab.data_sources import change_times
from agelab.label_noise import training_label_issues
from agelab.launchers import LaunchError
from agelab.paths import data_dir
from page_parts.marking import mark_control, marked_reasons, marks_summary


@st.cache_data(
    show_spinner="Predicting every training face out of fold (features are cached after the first time)..."
)
def label_issues(folders: str, signature: tuple[float, ...]) -> pd.DataFrame:
    return training_label_issues(folders, GROUPS10, log=lambda _: None).table


def describe(row: pd.Series) -> str:
    """The label, what the out-of-fold model says instead, and why the label looks wrong, in words."""
    labels = GROUPS10.labels
    label = f"{row['age']:g} y ({labels[int(GROUPS10.bin_of(row['age']))]}), {GENDERS[int(row['gender'])]}"
    model_gender = GENDERS[1] if row["model_female"] >= 0.5 else GENDERS[0]
    return (
        f"**Label:** {label}, {RACES.get(int(row['race']), 'Unknown')} · split `{row['split']}` · "
        f"source `{row.get('source', '')}`  \n"
        f"**Out-of-fold model:** {labels[int(row['model_bin'])]}, {model_gender} "
        f"({max(row['model_female'], 1 - row['model_female']):.0%})  \n"
        f"**Looks wrong:** {row['suspect'] or 'nothing (past the suspects)'} · label quality {row['quality']:.2f}"
    )


def launch_section(folder: str, image_folder: str, count: int) -> None:
    """The marks in words, the ``train exclude=`` command for them, and a button that launches it."""
    path = marks.marks_path(image_folder)
    marks_summary(image_folder, "lb_marks_export")
    st.code(f"python -m agelab train data={folder} exclude={path}", language="bash")
    keys_column, button_column = st.columns([4, 1], vertical_alignment="bottom")
    keys = keys_column.text_input(
        "More keys for the run",
        key="lb_run_keys",
        placeholder="e.g. recipe=face, or model=small_cnn epochs=3 (empty: the defaults)",
    )
    if button_column.button(
        "Launch train exclude=", key="lb_launch", icon=":material/rocket_launch:", disabled=count == 0
    ):
        try:
            config = {**parse_overrides(keys.split()), "data": folder, "exclude": str(path)}
            run_dir = launchers.get_launcher().submit(config)
        except (ConfigError, LaunchError) as err:
            st.error(f"Not launched: {err}", icon=":material/error:")
        except OSError as err:
            st.error(f"Not launched: cannot create the run folder: {err.strerror or err}")
        else:
            st.session_state["watch"] = run_dir.name  # the Train page's live view opens on it
            st.success(f"Launched `{run_dir}`: watch it on the Train page.", icon=":material/rocket_launch:")


def show() -> None:
    st.caption(
        "Faces of the training and validation splits whose label looks wrong, most suspect first: each is "
        "predicted by linear heads that never saw it (5 folds over the frozen backbone's features), and a "
        "label is suspect where that prediction confidently says another gender, or an age group two or "
        "more away. The test split is never shown here: it stays as it is, so that every run is scored on "
        "the same faces."
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
        return
    try:
        table = label_issues(folder, change_times(folder))
    except (OSError, ValueError) as err:
        st.error(str(err))
        return
    suspects = table[table["suspect"] != ""].reset_index(drop=True)
    if suspects.empty:
        st.success("No label looks wrong.", icon=":material/check:")
        return

    position = min(int(st.session_state.get("lb_position", 0)), len(suspects) - 1)
    row = suspects.iloc[position]
    image_folder = os.path.dirname(row["path"])
    st.markdown(
        f"**{len(suspects):,}** of {len(table):,} faces look mislabelled; this is **{position + 1}**. "
        "Keys: **Left**/**Right** step, **M** marks with the reason picked."
    )
    left, middle, right = st.columns([2, 2, 3])
    left.image(row["path"], caption="the stored file", width="stretch")
    if isinstance(row.get("input"), str) and os.path.exists(row["input"]):
        middle.image(row["input"], caption="the aligned crop the model sees", width="stretch")
    right.markdown(describe(row))
    # A key per face: the reason starts again at the first for each face.
    changed = mark_control(row["path"], f"lb_{position}", shortcut="M", container=right)
    if changed == "marked":
        st.session_state["lb_position"] = min(position + 1, len(suspects) - 1)
    if changed:
        st.rerun()

    back, forward, _ = st.columns([1, 1, 5])
    if back.button("Previous", shortcut="Left", icon=":material/chevron_left:", disabled=position == 0):
        st.session_state["lb_position"] = position - 1
        st.rerun()
    if forward.button(
        "Next", shortcut="Right", icon=":material/chevron_right:", disabled=position >= len(suspects) - 1
    ):
        st.session_state["lb_position"] = position + 1
        st.rerun()
    launch_section(folder, image_folder, len(marked_reasons(image_folder)))
