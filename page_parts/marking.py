"""A face marked as mislabelled, with its reason: the one control that Review's two views, its face
dialog and its confident mistakes draw. ``train exclude=`` leaves the marked faces out of training and
validation; marked test faces stay in the test split, scored as disputed."""

from __future__ import annotations

import os

import streamlit as st

from agelab import marks


def marked_reasons(folder: str) -> dict[str, str]:
    """File name -> reason of the faces marked in ``folder``; empty when its marks file is damaged
    (the marks summary names it)."""
    try:
        table = marks.load_marks(folder)
    except ValueError:
        return {}
    return table.set_index("file")["reason"].fillna("").astype(str).to_dict()


def mark_control(path: str, key: str, shortcut: str | None = None, container=st) -> str | None:
    """The reason to pick, and Mark and Unmark buttons, for the image at ``path``.

    Returns ``"marked"`` or ``"unmarked"`` when a press changed the marks file (the caller reruns or
    steps on), else None; a change that could not be saved is said in one sentence.
    """
    file = os.path.basename(path)
    reason_now = marked_reasons(os.path.dirname(path)).get(file)
    reason = container.radio("Reason", marks.REASONS, horizontal=True, key=f"{key}_reason")
    if reason_now is not None:
        container.caption(f":material/flag: Marked: {reason_now}")
    mark_column, unmark_column = container.columns(2)
    pressed = None
    if mark_column.button(
        "Mark", key=f"{key}_mark", shortcut=shortcut, icon=":material/flag:", type="primary", width="stretch"
    ):
        pressed = ("marked", True)
    if unmark_column.button(
        "Unmark",
        key=f"{key}_unmark",
        icon=":material/flag_circle:",
        disabled=reason_now is None,
        width="stretch",
    ):
        pressed = ("unmarked", False)
    if pressed is None:
        return None
    try:
        marks.set_mark(os.path.dirname(path), path, marked=pressed[1], reason=reason)
    except (OSError, ValueError) as err:
        container.error(marks.mark_failure(path, err))
        return None
    return pressed[0]


def marks_summary(folder: str | None, key: str) -> None:
    """How many faces of ``folder`` are marked, the marks in words, their export and the command that
    trains without them."""
    if folder is None:
        st.caption("The images sit in several folders: each folder keeps its own marks.")
        return
    path = marks.marks_path(folder)
    try:
        table = marks.load_marks(folder)
    except ValueError as err:
        st.warning(f"{err}. Delete or fix it to mark faces again.")
        return
    st.markdown(f"**{len(table)}** face{'s' if len(table) != 1 else ''} marked as mislabelled.")
    if table.empty:
        return
    st.dataframe(
        marks.in_words(table), hide_index=True, width="stretch", height=min(38 + 35 * len(table), 250)
    )
    st.download_button(
        "Export the marks (CSV)",
        data=marks.export_csv(table),
        file_name="marks.csv",
        mime="text/csv",
        key=key,
    )
    st.caption(
        f"Kept in `{path}`. Train without them: `python -m agelab train exclude={path}`: marked training "
        "and validation faces are left out; marked test faces stay, and are scored as disputed."
    )
