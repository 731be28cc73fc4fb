"""Review: a model's mistakes by how many age bins off they are, overall, per slice, and face by face."""

from __future__ import annotations

import functools
import os
import time

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from agelab import marks, palette, tables
from agelab.bins import BUILTIN_SCHEMES, get_scheme
from agelab.data import GENDERS, RACES
from agelab.evaluation.export import export_csv
from agelab.evaluation.gallery import (
    DIRECTIONS,
    SORTS,
    GalleryQuery,
    bin_probabilities,
    filter_predictions,
    image_folder,
    page_count,
    page_of,
    query_from_selection,
    sort_predictions,
    tile_markdown,
)
from agelab.evaluation.metrics import (
    SLICE_DIMENSIONS,
    compare_headlines,
    confusion,
    distance_distribution,
    headline,
    per_bin_report,
    slice_metrics,
)
from agelab.evaluation.mistakes import confident_mistakes
from agelab.evaluation.predictions import load_predictions, with_derived_columns
from agelab.evaluation.sources import PredictionSource, default_model_source, list_sources
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


@st.cache_data(show_spinner="Indexing the image folder for duplicates...", max_entries=4)
def load_index_frame(folder: str) -> pd.DataFrame | None:
    from agelab.data import load_index

    try:
        return load_index(folder).frame
    except (FileNotFoundError, OSError):
        return None


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


def confusion_figure(frame: pd.DataFrame, scheme_labels: list[str], normalized: bool) -> go.Figure:
    k = len(scheme_labels)
    counts = confusion(frame, k)
    z = confusion(frame, k, normalize=True) if normalized else counts
    text = [[f"{v:.0%}" if normalized else f"{int(v)}" for v in row] for row in z]
    ticks = list(range(k))
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=ticks,
            y=ticks,
            text=text,
            texttemplate="%{text}",
            textfont={"size": 16 if k <= 10 else 13},
            colorscale="Blues",
            colorbar={"title": "share" if normalized else "images", "thickness": 12},
            customdata=counts,
            hovertemplate="true %{y}, predicted %{x}<br>%{customdata} images<extra></extra>",
        )
    )
    # Streamlit reports no selection for heatmap cells, so an invisible marker on each cell
    # carries the click.
    true_idx, pred_idx = np.meshgrid(ticks, ticks, indexing="ij")
    fig.add_trace(
        go.Scatter(
            x=pred_idx.ravel(),
            y=true_idx.ravel(),
            mode="markers",
            marker={"size": max(12, 360 // k), "symbol": "square", "opacity": 0.01, "color": "black"},
            customdata=np.stack([true_idx.ravel(), pred_idx.ravel(), counts.ravel()], axis=1),
            hovertemplate="true %{customdata[0]}, predicted %{customdata[1]}: %{customdata[2]} images"
            "<br>click to show them<extra></extra>",
            showlegend=False,
        )
    )
    fig.update_layout(
        xaxis={"title": "predicted age bin", "tickvals": ticks, "ticktext": scheme_labels, "side": "bottom"},
        yaxis={
            "title": "true age bin",
            "tickvals": ticks,
            "ticktext": scheme_labels,
            "autorange": "reversed",
        },
        height=480 + 10 * k,
        margin={"t": 10},
        font={"size": 13},
    )
    return fig


def distance_figure(dist: pd.DataFrame, log_axis: bool) -> go.Figure:
    fig = go.Figure()
    for direction in ("under", "exact", "over"):
        part = dist[dist["direction"] == direction]
        fig.add_trace(
            go.Bar(
                x=part["distance"],
                y=part["count"],
                name=palette.DIRECTION_NAMES[direction],
                marker_color=palette.DIRECTION[direction],
                # Each bar says its count, so the rare far misses stay visible on a linear axis.
                text=part["count"],
                textposition="outside",
                cliponaxis=False,
                customdata=part["share"],
                hovertemplate="%{x:+d} bins: %{y} images (%{customdata:.1%})<br>click to show them<extra></extra>",
            )
        )
    fig.update_layout(
        xaxis={"title": "bin distance (predicted - true)", "dtick": 1},
        yaxis={
            "title": "images" + (" (log scale)" if log_axis else ""),
            "type": "log" if log_axis else "linear",
        },
        height=340,
        margin={"t": 30, "r": 10},
        # Right of the plot, below the toolbar: above the plot the toolbar covered it, below it the
        # axis title.
        legend={"orientation": "v", "yanchor": "top", "y": 0.85, "x": 1.02},
        bargap=0.15,
    )
    return fig


def comparison_figure(frames: dict[str, pd.DataFrame]) -> go.Figure:
    """The bin-distance distributions of two runs side by side, as shares so sizes may differ."""
    fig = go.Figure()
    for name, run_frame in frames.items():
        dist = distance_distribution(run_frame)
        fig.add_trace(
            go.Bar(
                x=dist["distance"],
                y=dist["share"],
                name=name,
                customdata=dist["count"],
                hovertemplate=f"{name}<br>%{{x:+d}} bins: %{{y:.1%}} (%{{customdata}} images)<extra></extra>",
            )
        )
    fig.update_layout(
        barmode="group",
        xaxis={"title": "bin distance (predicted - true)", "dtick": 1},
        yaxis={"title": "share of images", "tickformat": ".0%"},
        height=360,
        margin={"t": 60},
        # Above the plot, clear of the axis title (below it, it sat on the title).
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
    )
    return fig


def bin_probability_figure(probs: pd.DataFrame) -> go.Figure:
    colors = palette.bin_colors(probs["label"].tolist())
    role = np.where(probs["true"] & probs["predicted"], "true and predicted", "")
    role = np.where(probs["true"] & ~probs["predicted"], "true bin", role)
    role = np.where(~probs["true"] & probs["predicted"], "predicted bin", role)
    fig = go.Figure(
        go.Bar(
            x=probs["label"],
            y=probs["probability"],
            marker_color=[colors[label] for label in probs["label"]],
            marker_line={"color": ["black" if r else "rgba(0,0,0,0)" for r in role], "width": 2},
            text=[f"{p:.0%}" + (f"<br>{r}" if r else "") for p, r in zip(probs["probability"], role)],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{x}: %{y:.1%}<extra></extra>",
        )
    )
    fig.update_layout(
        xaxis={"title": "age bin"},
        yaxis={"title": "model's probability", "tickformat": ".0%", "range": [0, 1.15]},
        height=340,
        margin={"t": 20},
    )
    return fig


@st.dialog("Face", width="large")
def face_dialog(row: pd.Series, labels: list[str], marked: bool) -> None:
    """The face large, with everything the tile says and the model's probability for every bin."""
    left, right = st.columns([2, 3])
    if os.path.exists(row["path"]):
        left.image(row["path"], width="stretch")
    else:
        left.warning(f"missing file {row['path']}")
    right.markdown(tile_markdown(row))
    if marked:
        right.caption(":material/flag: Marked: label looks wrong")
    probs = bin_probabilities(row, labels)
    if probs is None:
        right.caption("Bin probabilities do not apply after rebinning to another scheme.")
    else:
        right.plotly_chart(bin_probability_figure(probs), key="rv_dialog_probs")


def toggle_mark(path: str, key: str) -> None:
    try:
        marks.set_mark(os.path.dirname(path), path, marked=bool(st.session_state[key]))
    except (OSError, ValueError) as err:
        # Shown by the gallery on this rerun; the checkbox goes back to what the file still says.
        st.session_state["rv_mark_error"] = marks.mark_failure(path, err)
        st.session_state[key] = not st.session_state[key]


def mark_key(path: str) -> str:
    return f"rv_mark_{os.path.basename(path)}"


def gallery_tile(row: pd.Series, labels: list[str], marked: bool) -> None:
    with st.container(border=True):
        if os.path.exists(row["path"]):
            st.image(row["path"], width="stretch")
        else:
            st.caption(f"missing file {row['path']}")
        st.caption(tile_markdown(row))
        key = mark_key(row["path"])
        st.checkbox(
            "label looks wrong",
            value=marked,
            key=key,
            on_change=toggle_mark,
            args=(row["path"], key),
            help="Keeps a mark beside the dataset index; `train exclude=` leaves marked faces out",
        )
        if st.button("Open", key=f"rv_open_{os.path.basename(row['path'])}", icon=":material/open_in_full:"):
            face_dialog(row, labels, bool(st.session_state.get(key, marked)))


def marks_summary(frame: pd.DataFrame) -> None:
    folder = image_folder(frame)
    if folder is None:
        st.caption("The images sit in several folders: each folder keeps its own marks.")
        return
    path = marks.marks_path(folder)
    try:
        table = marks.load_marks(folder)
    except ValueError as err:
        st.warning(f"{err}. Delete or fix it to mark faces again.")
        return
    st.markdown(f"**{len(table)}** face{'s' if len(table) != 1 else ''} marked *label looks wrong*.")
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
        key="rv_marks_export",
    )
    st.caption(f"Kept in `{path}`. Train without them: `python -m agelab train exclude={path}`.")


@st.fragment
def gallery(
    filtered: pd.DataFrame, frame: pd.DataFrame, labels: list[str], sort: str, page_size: int, page_key: str
) -> None:
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
    with st.grid(columns="auto", min_column_width=220, gap="small"):
        for _, row in rows.iterrows():
            gallery_tile(row, labels, row["path"] in marked)
    marks_summary(frame)


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
        "copies under other names whose labels disagree (shown beside them), a sign of label noise."
        + (
            ""
            if index_frame is not None
            else " The image folder could not be indexed, so duplicates are not shown."
        )
    )
    for _, row in mistakes.iterrows():
        duplicates = row["conflicting_duplicates"]
        cols = st.columns([1, 3])
        with cols[0]:
            if os.path.exists(row["path"]):
                st.image(row["path"], width="stretch")
        with cols[1]:
            st.markdown(tile_markdown(row))
            if duplicates:
                st.markdown("**Same bytes, other labels:**")
                with st.grid(columns=4, min_column_width=110):
                    for dup in duplicates:
                        with st.container():
                            if os.path.exists(dup["path"]):
                                st.image(dup["path"], width="stretch")
                            st.caption(
                                f"{dup['age']} y · {GENDERS[dup['gender']]} · {RACES[dup['race']]}  \n"
                                f"`{dup['file']}`"
                            )
            else:
                st.caption("No conflicting duplicate.")


# --- the page ----------------------------------------------------------------------------------

started = time.perf_counter()
st.title("Review")
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
    compared = tables.compare_table(compare_headlines({source.name: main, other_name: other}))
    side = st.columns([2, 3])
    side[0].dataframe(compared, width="stretch", height=38 + 35 * len(compared), key="rv_compare_table")
    side[1].plotly_chart(
        comparison_figure({source.name: frame, other_name: other_frame}), key="rv_compare_chart"
    )

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
    log_axis = st.toggle(
        "Log scale", key="rv_log_axis", help="Shows the rare far misses as clearly as the rest"
    )
    distance_event = st.plotly_chart(
        distance_figure(distance_distribution(frame), log_axis),
        on_select="rerun",
        selection_mode="points",
        key="rv_distance_chart",
    )
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
g = st.columns([2, 3, 2, 1, 1])
gender_pick = g[0].multiselect("Gender", list(GENDERS.values()), key="rv_gender")
eth_pick = g[1].multiselect("Ethnicity", list(RACES.values()), key="rv_eth")
sort = g[2].selectbox("Sort by", SORTS, key="rv_sort")
page_size = g[3].selectbox("Per page", [24, 48, 96], key="rv_page_size")
g[4].button("Clear", on_click=reset_filters, key="rv_clear", help="Clear every filter")

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
    gallery(
        filtered, frame, labels, sort, int(page_size), page_key=f"{abs(hash((context, query, page_size))):x}"
    )

st.subheader("Confident mistakes")
m = st.columns([3, 2])
mistakes_limit = m[0].slider("How many", 4, 48, 12, step=4, key="rv_mistakes")
only_conflicts = m[1].toggle(
    "Only those with conflicting duplicates", key="rv_only_conflicts", help="Likely label noise"
)
confident_mistakes_section(frame, mistakes_limit, only_conflicts)
st.caption(f"Page computed in {time.perf_counter() - started:.2f} s.")
