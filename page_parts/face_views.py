"""Review's faces: a gallery tile, the face dialog (the stored file, the crop the model saw, every bin's
probability, Previous/Next through the gallery's selection, a mark with its reason), and the
confident mistakes."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st

from agelab import marks
from agelab.data import GENDERS, RACES
from agelab.evaluation.gallery import bin_probabilities, image_folder, model_view, tile_markdown
from agelab.evaluation.mistakes import confident_mistakes
from agelab.evaluation.review_charts import bin_probability_figure
from agelab.images import ImageError
from agelab.quality_flags import file_flags, flags_sentence
from page_parts.marking import mark_control

DIALOG_AT = "rv_dialog_at"
# While set, the gallery draws the dialog on every run (a mark or a step reruns it); closing clears it.
DIALOG_OPEN = "rv_dialog_open"


@dataclass(frozen=True)
class ModelView:
    """What the reviewed model was given: the detector's aligned crops or whole images, at ``size``
    px (None: not known, so the crop cannot be shown)."""

    aligned: bool
    size: int | None


@st.cache_resource(show_spinner=False)
def crop_detector():
    from agelab.faces import FaceDetector

    return FaceDetector()


@st.cache_data(max_entries=256, show_spinner=False)
def seen_by_model(path: str, aligned: bool, size: int) -> np.ndarray:
    return model_view(path, aligned, size, crop_detector() if aligned else None)


@st.cache_data(max_entries=4096, show_spinner=False)
def flags_of(path: str, face_found: bool | None) -> list[str]:
    return file_flags(path, face_found)


def face_found(row: pd.Series) -> bool | None:
    value = row.get("face_found")
    return None if value is None or pd.isna(value) else bool(value)


def mark_key(path: str) -> str:
    return f"rv_mark_{os.path.basename(path)}"


def toggle_mark(path: str, key: str) -> None:
    try:
        marks.set_mark(
            os.path.dirname(path),
            path,
            marked=bool(st.session_state[key]),
            reason=st.session_state.get("rv_reason", marks.REASONS[0]),
        )
    except (OSError, ValueError) as err:
        # Shown by the gallery on this rerun; the checkbox goes back to what the file still says.
        st.session_state["rv_mark_error"] = marks.mark_failure(path, err)
        st.session_state[key] = not st.session_state[key]


def show_flags(row: pd.Series, container=st) -> None:
    if sentence := flags_sentence(flags_of(row["path"], face_found(row))):
        container.caption(f":orange[:material/warning: {sentence}]")


def step_dialog(position: int) -> None:
    st.session_state[DIALOG_AT] = position


def close_dialog() -> None:
    st.session_state.pop(DIALOG_OPEN, None)


@st.dialog("Face", width="large", on_dismiss=close_dialog)
def face_dialog(selection: pd.DataFrame, labels: list[str], view: ModelView) -> None:
    """One face of the gallery's selection large; Previous and Next step through the selection."""
    at = min(max(int(st.session_state.get(DIALOG_AT, 0)), 0), len(selection) - 1)
    row = selection.iloc[at]
    back, where, forward = st.columns([1, 3, 1], vertical_alignment="center")
    # Callbacks, not a rerun after the click: the step is made before the dialog draws again.
    back.button(
        "Previous", key="rv_dialog_back", icon=":material/chevron_left:", disabled=at == 0,
        on_click=step_dialog, args=(at - 1,),
    )  # fmt: skip
    where.markdown(f"Face **{at + 1:,}** of {len(selection):,} in the gallery's selection")
    forward.button(
        "Next", key="rv_dialog_forward", icon=":material/chevron_right:", disabled=at >= len(selection) - 1,
        on_click=step_dialog, args=(at + 1,),
    )  # fmt: skip
    stored, seen, text = st.columns([2, 2, 3])
    if os.path.exists(row["path"]):
        stored.image(row["path"], caption="the stored file", width="stretch")
    else:
        stored.warning(f"missing file {row['path']}")
    if view.size is None:
        seen.caption("The model's input size is not recorded, so its crop cannot be shown.")
    else:
        try:
            seen.image(
                seen_by_model(row["path"], view.aligned, view.size),
                caption=f"what the model saw: {'the aligned crop' if view.aligned else 'the whole image'}, "
                f"{view.size} px",
                width="stretch",
            )
        except ImageError as err:
            seen.caption(str(err))
    text.markdown(tile_markdown(row))
    show_flags(row, text)
    if mark_control(row["path"], f"rv_dialog_{os.path.basename(row['path'])}", container=text):
        # The tile's checkbox is read again from the marks file when the gallery is drawn next.
        st.session_state.pop(mark_key(row["path"]), None)
        st.rerun()  # the whole page: the tile's checkbox and the marks table change too
    probs = bin_probabilities(row, labels)
    if probs is None:
        st.caption("Bin probabilities do not apply after rebinning to another scheme.")
    else:
        st.plotly_chart(bin_probability_figure(probs), key="rv_dialog_probs")


def gallery_tile(row: pd.Series, position: int, marked: bool, open_face) -> None:
    """A face of the gallery: the stored file, what the tile says, its warnings, a mark checkbox (with
    the reason picked above the gallery) and Open; ``open_face(position)`` opens the dialog."""
    with st.container(border=True):
        if os.path.exists(row["path"]):
            st.image(row["path"], width="stretch")
        else:
            st.caption(f"missing file {row['path']}")
        st.caption(tile_markdown(row))
        show_flags(row)
        key = mark_key(row["path"])
        st.checkbox(
            "label looks wrong",
            value=marked,
            key=key,
            on_change=toggle_mark,
            args=(row["path"], key),
            help="Marks it with the reason picked above the gallery; `train exclude=` leaves marked "
            "training faces out, and scores marked test faces as disputed",
        )
        if st.button("Open", key=f"rv_open_{os.path.basename(row['path'])}", icon=":material/open_in_full:"):
            open_face(position)


def duplicates_grid(duplicates: list[dict]) -> None:
    st.markdown("**Same bytes, other labels:**")
    with st.grid(columns=4, min_column_width=110):
        for dup in duplicates:
            with st.container():
                if os.path.exists(dup["path"]):
                    st.image(dup["path"], width="stretch")
                st.caption(
                    f"{dup['age']} y · {GENDERS[dup['gender']]} · {RACES[dup['race']]}  \n`{dup['file']}`"
                )


def confident_mistakes_list(mistakes: pd.DataFrame) -> None:
    """The most confident wrong predictions, each with its conflicting duplicates and a mark control."""
    for _, row in mistakes.iterrows():
        picture, words, mark = st.columns([1, 3, 2])
        if os.path.exists(row["path"]):
            picture.image(row["path"], width="stretch")
        with words:
            st.markdown(tile_markdown(row))
            show_flags(row)
            if row["conflicting_duplicates"]:
                duplicates_grid(row["conflicting_duplicates"])
            else:
                st.caption("No conflicting duplicate.")
        if mark_control(row["path"], f"rv_cm_{os.path.basename(row['path'])}", container=mark):
            st.session_state.pop(mark_key(row["path"]), None)
            st.rerun()


@st.cache_data(show_spinner="Indexing the image folder for duplicates...", max_entries=4)
def load_index_frame(folder: str) -> pd.DataFrame | None:
    from agelab.data import load_index

    try:
        return load_index(folder).frame
    except (FileNotFoundError, OSError):
        return None


def confident_mistakes_section(frame: pd.DataFrame, limit: int, only_conflicts: bool) -> None:
    folder = image_folder(frame)
    index_frame = load_index_frame(str(folder)) if folder is not None else None
    mistakes = confident_mistakes(frame, index_frame, limit=limit, only_conflicts=only_conflicts)
    if mistakes.empty:
        st.info("No wrong bin predictions.")
        return
    with_dups = int((mistakes["conflicting_duplicates"].str.len() > 0).sum())
    st.caption(
        f"The {len(mistakes)} most confident wrong predictions; {with_dups} of them have byte-identical "
        "copies under other names whose labels disagree (shown beside them), a sign of label noise. "
        "Mark a face whose label is wrong: a marked test face stays in the test split, scored as disputed."
        + (
            ""
            if index_frame is not None
            else " The image folder could not be indexed, so duplicates are not shown."
        )
    )
    confident_mistakes_list(mistakes)
