"""Review: the training labels that look wrong (the opening view), and a model's test-split mistakes by
how many age bins off they are, overall, per slice, and face by face."""

from __future__ import annotations

import functools
import os
import time

import pandas as pd
import streamlit as st

from agelab import marks, tables
from agelab.bins import BUILTIN_SCHEMES, get_scheme
from agelab.data import GENDERS, RACES
from agelab.evaluation import shared_split
from agelab.evaluation.export import export_csv
from agelab.evaluation.gallery import (
    DIRECTIONS,
    SORTS,
    GalleryQuery,
    filter_predictions,
    image_folder,
    model_input_size,
    page_count,
    page_of,
    query_from_selection,
    saw_aligned_crops,
    sort_predictions,
)
from agelab.evaluation.metrics import (
    SLICE_DIMENSIONS,
    compare_headlines,
    distance_distribution,
    headline,
    per_bin_report,
    slice_metrics,
)
from agelab.evaluation.predictions import load_predictions, with_derived_columns
from agelab.evaluation.review_charts import FAR, comparison_figure, confusion_figure, distance_figure
from agelab.evaluation.shared_split import test_set_difference
from agelab.evaluation.sources import PredictionSource, default_model_source, list_sources
from page_parts import label_review
from page_parts.face_views import (
    DIALOG_AT,
    DIALOG_OPEN,
    ModelView,
    confident_mistakes_section,
    face_dialog,
    gallery_tile,
)
from page_parts.marking import marks_summary
from page_parts.shared_scores import rescore_offer
from streamlit_setup import keep_models_warm, through_app

through_app()
keep_models_warm()

# Every gallery filter and its cleared value. Clear and chart clicks assign these (popping the keys
# would leave the browser's chips in place, and they came back on the next change).
FILTER_DEFAULTS = {
    "rv_dist_mode": "any",
    "rv_dist_k": 0,
    "rv_direction": "any",
    "rv_true": [],
    "rv_pred": [],
    "rv_gender": [],
    "rv_eth": [],
}
DIST_MODES = ("any", "exactly", "at least")


@st.cache_data(show_spinner="Loading predictions...", max_entries=8)
def load_prepared(path: str, mtime: float, native: str, scheme: str) -> pd.DataFrame:
    return with_derived_columns(load_predictions(path), native, scheme)


@st.cache_data(show_spinner="Computing slice metrics and intervals...", max_entries=8)
def load_slices(path: str, mtime: float, native: str, scheme: str) -> pd.DataFrame:
    return slice_metrics(load_prepared(path, mtime, native, scheme))


def prepared(source: PredictionSource, scheme: str) -> pd.DataFrame:
    path = str(source.predictions)
    return load_prepared(path, os.path.getmtime(path), source.bins, scheme)


def reset_filters() -> None:
    for key, value in FILTER_DEFAULTS.items():
        st.session_state[key] = list(value) if isinstance(value, list) else value


def apply_selection(update: dict, labels: list[str]) -> None:
    """Turn a chart selection into gallery filters; runs before the filter widgets are drawn."""
    reset_filters()
    if "distance" in update:
        st.session_state["rv_dist_mode"] = "at least" if update["at_least"] else "exactly"
        st.session_state["rv_dist_k"] = int(update["distance"])
        st.session_state["rv_direction"] = update["direction"]
    if "true_bins" in update:
        st.session_state["rv_true"] = [labels[b] for b in update["true_bins"]]
        st.session_state["rv_pred"] = [labels[b] for b in update["pred_bins"]]


def selection_points(event: object) -> list[dict]:
    try:
        return list(event["selection"]["points"])  # type: ignore[index]
    except (KeyError, TypeError):
        return []


def take_selection(event: object, chart: str, labels: list[str]) -> None:
    """Apply a chart's selection once: a selection persists across reruns, so remember the last one."""
    points = selection_points(event)
    signature = repr(sorted((p.get("curve_number"), p.get("x"), p.get("y")) for p in points))
    if not points:
        # Deselected: forget it, so that picking the same bar or cell again applies it again.
        st.session_state.pop(f"rv_applied_{chart}", None)
        return
    if st.session_state.get(f"rv_applied_{chart}") == signature:
        return
    st.session_state[f"rv_applied_{chart}"] = signature
    apply_selection(query_from_selection(points, chart), labels)


def percent(value: float | None) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{value:.1%}"


def show_headline(h: dict, other: dict | None = None) -> None:
    def delta(key: str, scale: float = 100, unit: str = " pp") -> str | None:
        if other is None or h.get(key) is None or other.get(key) is None:
            return None
        return f"{(h[key] - other[key]) * scale:+.1f}{unit}"

    cols = st.columns(7)
    cols[0].metric("Exact bin", percent(h["exact"]), delta("exact"))
    cols[1].metric("Within 1 bin", percent(h["within1"]), delta("within1"))
    cols[2].metric("Within 2 bins", percent(h["within2"]), delta("within2"))
    cols[3].metric("Age MAE", f"{h['mae']:.2f} y", delta("mae", 1, " y"), delta_color="inverse")
    cols[4].metric("Gender accuracy", percent(h["gender_acc"]), delta("gender_acc"))
    auc = h.get("gender_auc")
    cols[5].metric("Gender ROC AUC", "n/a" if auc is None else f"{auc:.3f}", delta("gender_auc", 1, ""))
    cols[6].metric("Images", f"{h['n']:,}")


@st.fragment
def gallery(
    filtered: pd.DataFrame, frame: pd.DataFrame, labels: list[str], view: ModelView, sort: str, page_size: int,
    page_key: str,
) -> None:  # fmt: skip
    """Only this part reruns when the user pages or marks, so paging through thousands stays quick."""
    ordered = sort_predictions(filtered, sort, seed=0)
    pages = page_count(len(ordered), page_size)
    # A new query or order gets a new key, so the pager starts again at page 1.
    page = st.pagination(pages, key=f"rv_page_{page_key}", max_visible_pages=9)
    rows = page_of(ordered, page, page_size)
    first = (page - 1) * page_size
    st.caption(f"Images {first + 1:,}-{first + len(rows):,} of {len(ordered):,}")
    if error := st.session_state.pop("rv_mark_error", None):
        st.error(error)
    try:
        marked = marks.marked_paths(rows["path"])
    except ValueError:
        marked = set()  # marks_summary below says which file is damaged

    def open_face(position: int) -> None:
        # The dialog steps through the whole selection, in the gallery's order, from this face.
        st.session_state[DIALOG_AT] = position
        st.session_state[DIALOG_OPEN] = True

    with st.grid(columns="auto", min_column_width=220, gap="small"):
        for offset, (_, row) in enumerate(rows.iterrows()):
            gallery_tile(row, first + offset, row["path"] in marked, open_face)
    if st.session_state.get(DIALOG_OPEN):
        face_dialog(ordered, labels, view)
    folder = image_folder(frame)
    marks_summary(None if folder is None else str(folder), "rv_marks_export")


# --- the page ----------------------------------------------------------------------------------

started = time.perf_counter()
st.title("Review")
VIEWS = ("Labels that look wrong (training data)", "Test-split mistakes")
view_pick = st.segmented_control(
    "What to review", VIEWS, default=VIEWS[0], required=True, key="rv_view", label_visibility="collapsed"
)
if view_pick == VIEWS[0]:
    label_review.show()
    st.stop()
st.caption("How far off is the model, in ordinal age bins? Click a bar or a cell to see those faces.")

try:
    with st.spinner("Scoring the default model on the test split (once, about half a minute)..."):
        default_model_source()  # so a fresh clone can review a model before training one
except (OSError, ValueError) as err:
    st.warning(f"The default model could not be scored on the test split: {err}")
sources = list_sources()
if not sources:
    st.info(
        "No predictions yet. Train a run on the Train page (it saves its test-split predictions), or "
        "evaluate a saved model on a folder: `python -m agelab evaluate --model runs/NAME --data FOLDER`."
    )
    st.stop()

by_name = {s.name: s for s in sources}
pick = st.columns([3, 3, 2])
default_source = next((i for i, s in enumerate(sources) if s.info.get("default_model")), 0)
source = by_name[pick[0].selectbox("Run", list(by_name), index=default_source, key="rv_source")]
if source.problem:
    st.error(f"{source.name} cannot be reviewed: {source.problem}.")
    st.stop()
other_name = pick[1].selectbox(
    "Compare with", ["(none)"] + [n for n in by_name if n != source.name], key="rv_other"
)
scheme_options = list(dict.fromkeys([source.bins, *BUILTIN_SCHEMES]))
scheme_spec = pick[2].selectbox(
    "Bins",
    scheme_options,
    key="rv_bins",
    help="Another scheme than the model's derives bins from the predicted age.",
)
if scheme_spec not in scheme_options:
    scheme_spec = source.bins
scheme = get_scheme(scheme_spec)
labels = scheme.labels

context = (source.name, scheme.spec)
if st.session_state.get("rv_context") != context:
    reset_filters()
    st.session_state["rv_context"] = context

try:
    frame = prepared(source, scheme.spec)
except (OSError, ValueError) as err:
    st.error(f"Cannot read {source.predictions}: {err}")
    st.stop()
if scheme.spec != get_scheme(source.bins).spec:
    st.caption(
        f"Rebinned from the model's scheme `{source.bins}` by predicted age; bin probabilities do not apply."
    )

main = headline(frame)
other = None
if other_name != "(none)":
    other_source = by_name[other_name]
    try:
        if other_source.problem:
            raise ValueError(other_source.problem)
        other_frame = prepared(other_source, scheme.spec)
        other = headline(other_frame)
    except (OSError, ValueError) as err:
        st.error(f"Cannot read {other_source.predictions}: {err}")

show_headline(main, other)
if other is not None:
    st.caption(f"Deltas compare **{source.name}** against **{other_name}**.")
    compared_frames = {source.name: frame, other_name: other_frame}
    if warning := test_set_difference(frame, other_frame, (source.name, other_name)):
        st.warning(warning, icon=":material/compare_arrows:")
        run_dirs = [s.predictions.parent for s in (source, by_name[other_name]) if s.kind == "run"]
        if len(run_dirs) == 2:
            rescore_offer(run_dirs, "rv_rescore")
            shared = [shared_split.shared_out(d.name) for d in run_dirs]
            if all(path.is_file() and shared_split.shared_scores(d) for path, d in zip(shared, run_dirs)):
                compared_frames = {
                    name: load_prepared(str(path), os.path.getmtime(path), source.bins, scheme.spec)
                    for name, path in zip((source.name, other_name), shared)
                }
                main, other = (headline(f) for f in compared_frames.values())
        else:
            st.caption(
                "An evaluation is scored on the folder it names; compare runs to score both on one split."
            )
    compared = tables.compare_table(compare_headlines({source.name: main, other_name: other}))
    # The whole width: beside the chart, the second run's column was cut off.
    st.dataframe(compared, width="stretch", height=38 + 35 * len(compared), key="rv_compare_table")
    st.plotly_chart(comparison_figure(compared_frames), key="rv_compare_chart")

st.subheader("Metrics by slice")
slice_pick = st.selectbox("Slice", ["every slice", *SLICE_DIMENSIONS], key="rv_slice")
slices = load_slices(str(source.predictions), os.path.getmtime(source.predictions), source.bins, scheme.spec)
if slice_pick != "every slice":
    slices = slices[slices["slice"] == slice_pick]
shown_slices = tables.slice_table(slices)
st.dataframe(
    shown_slices,
    hide_index=True,
    width="stretch",
    column_config={
        **{c: st.column_config.NumberColumn(c, format="%.1f %%") for c in shown_slices if c.endswith(" %")},
        "MAE (y)": st.column_config.NumberColumn(format="%.2f"),
        "images": st.column_config.NumberColumn(format="%d"),
    },
)
st.caption("CI: the 95 % interval, Wilson for proportions, a seeded bootstrap (1,000 resamples) for MAE.")

# The confusion matrix gets the full width, so its cell numbers are large enough to read.
st.subheader("Confusion matrix")
normalized = st.radio("Show", ["counts", "row-normalised"], horizontal=True, key="rv_cm_mode") != "counts"
confusion_event = st.plotly_chart(
    confusion_figure(frame, labels, normalized),
    on_select="rerun",
    selection_mode="points",
    key="rv_confusion_chart",
)
left, right = st.columns(2)
with left:
    st.subheader("Bin distance")
    distance_event = st.plotly_chart(
        distance_figure(distance_distribution(frame)),
        on_select="rerun",
        selection_mode="points",
        key="rv_distance_chart",
    )
    st.caption(f"Misses of {FAR} bins or more sit on panels of their own scale, so each is a bar to click.")
with right:
    st.subheader("Per age bin")
    per_bin = tables.per_bin_table(per_bin_report(frame, scheme))
    st.dataframe(
        per_bin,
        hide_index=True,
        width="stretch",
        height=38 + 35 * len(per_bin),
        column_config={
            c: st.column_config.NumberColumn(c, format="%.1f %%") for c in per_bin if c.endswith(" %")
        },
    )
take_selection(confusion_event, "confusion", labels)
take_selection(distance_event, "distance", labels)

st.subheader("Gallery")
f = st.columns([2, 1, 2, 3, 3])
dist_mode = f[0].selectbox("Bins off", DIST_MODES, key="rv_dist_mode")
dist_k = f[1].number_input("k", min_value=0, max_value=scheme.num_bins - 1, step=1, key="rv_dist_k")
direction = f[2].radio("Direction", DIRECTIONS, horizontal=True, key="rv_direction")
true_pick = f[3].multiselect("True bin", labels, key="rv_true")
pred_pick = f[4].multiselect("Predicted bin", labels, key="rv_pred")
g = st.columns([2, 3, 2, 2, 1, 1])
gender_pick = g[0].multiselect("Gender", list(GENDERS.values()), key="rv_gender")
eth_pick = g[1].multiselect("Ethnicity", list(RACES.values()), key="rv_eth")
sort = g[2].selectbox("Sort by", SORTS, key="rv_sort")
g[3].selectbox("Mark reason", marks.REASONS, key="rv_reason", help="The reason a tile's checkbox marks with")
page_size = g[4].selectbox("Per page", [24, 48, 96], key="rv_page_size")
g[5].button("Clear", on_click=reset_filters, key="rv_clear", help="Clear every filter")

query = GalleryQuery(
    distance=None if dist_mode == "any" else int(dist_k),
    at_least=dist_mode == "at least",
    true_bins=tuple(labels.index(x) for x in true_pick),
    pred_bins=tuple(labels.index(x) for x in pred_pick),
    genders=tuple(k for k, v in GENDERS.items() if v in gender_pick),
    races=tuple(k for k, v in RACES.items() if v in eth_pick),
    direction=direction,
    sort=sort,
)
filtered = filter_predictions(frame, query)
st.markdown(f"**{len(filtered):,}** of {len(frame):,} images match.")
st.download_button(
    "Export the filtered rows (CSV)",
    # Built only when clicked, so a large table costs nothing on every rerun.
    data=functools.partial(export_csv, sort_predictions(filtered, sort)),
    file_name=f"{source.name.replace(' ', '_').replace(':', '')}-filtered.csv",
    mime="text/csv",
    key="rv_export",
)
if filtered.empty:
    st.info("No image matches these filters.")
else:
    model_seen = ModelView(saw_aligned_crops(frame), model_input_size(source.info))
    page_key = f"{abs(hash((context, query, page_size))):x}"
    gallery(filtered, frame, labels, model_seen, sort, int(page_size), page_key)

st.subheader("Confident mistakes")
m = st.columns([3, 2])
mistakes_limit = m[0].slider("How many", 4, 48, 12, step=4, key="rv_mistakes")
only_conflicts = m[1].toggle(
    "Only those with conflicting duplicates", key="rv_only_conflicts", help="Likely label noise"
)
confident_mistakes_section(frame, mistakes_limit, only_conflicts)
st.caption(f"Page computed in {time.perf_counter() - started:.2f} s.")
