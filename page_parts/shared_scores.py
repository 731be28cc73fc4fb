"""The offer, under a comparison of runs scored on different test sets, to score them all on the shared
test split in the background (``python -m agelab rescore``)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from agelab.evaluation import shared_split


def rescore_offer(run_dirs: list[Path], key: str) -> None:
    """A button that scores the runs not yet scored on the shared test split; says when all are."""
    pending = [p for p in run_dirs if (p / "model.keras").is_file() and shared_split.shared_scores(p) is None]
    started = st.session_state.get(f"{key}_started")
    if not pending:
        st.caption(":material/check: Scored on the shared test split: the comparison shows those scores.")
        return
    names = ", ".join(p.name for p in pending)
    if started == names:
        st.info(
            f"Scoring {names} on the shared test split in the background (log: "
            f"`{shared_split.evaluations_dir() / 'rescore.log'}`); the comparison uses the scores once ready.",
            icon=":material/hourglass_top:",
        )
        return
    if st.button(
        f"Score {names} on the shared test split",
        key=key,
        icon=":material/balance:",
        help="Evaluates each run's model on the saved test split of the default dataset, in the background",
    ):
        shared_split.start(pending)
        st.session_state[f"{key}_started"] = names
        st.rerun()
