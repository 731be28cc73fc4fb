"""Train: configure and launch runs, watch them live, stop them, and compare them."""

from __future__ import annotations

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from agelab import runs
from agelab.bins import BUILTIN_SCHEMES
from agelab.config import (
    ALPHAS,
    MODELS,
    OPTIONS,
    REBALANCE,
    RECIPES,
    WEIGHTS,
    ConfigError,
    default_config,
    parse_overrides,
)
from agelab.paths import data_dir, runs_dir
from streamlit_setup import through_app

through_app()

DEFAULTS = default_config()
SIZES = (64, 112, 144, 224)
ALL_ALPHAS = sorted({a for values in ALPHAS.values() for a in values})


@st.cache_data(ttl=300, show_spinner=False)
def gpu_status() -> tuple[bool, str]:
    return runs.gpu_status()


st.title("Train")
has_gpu, gpu_text = gpu_status()
(st.success if has_gpu else st.info)(gpu_text, icon=":material/memory:")

# Enter in a field must not launch a run: runs cost minutes of CPU, so only the button launches.
with st.form("config", enter_to_submit=False):
    st.subheader("New run")
    c1, c2, c3, c4 = st.columns(4)
    model = c1.selectbox("Model", MODELS, index=MODELS.index(DEFAULTS["model"]))
    alpha = c1.selectbox(
        "Width (alpha)", ["model default", *ALL_ALPHAS], help="MobileNet only: 0.35/0.5 (v2), 0.25 (v1)"
    )
    weights = c1.selectbox("Weights", WEIGHTS, help="seed_cnn and small_cnn need none")
    image_size = c2.selectbox("Image size", SIZES, index=SIZES.index(DEFAULTS["image_size"]))
    epochs = c2.number_input("Epochs", 1, 1000, DEFAULTS["epochs"])
    batch_size = c2.number_input("Batch size", 1, 4096, DEFAULTS["batch_size"])
    learning_rate = c2.number_input(
        "Learning rate", 1e-6, 1.0, DEFAULTS["learning_rate"], step=1e-4, format="%.5f"
    )
    bins = c3.selectbox("Age bins", [*BUILTIN_SCHEMES, "custom"])
    custom_edges = c3.text_input("Custom bin edges", "0,3,13,20,40,60", help="used when Age bins is custom")
    rebalance = c3.selectbox("Rebalance", REBALANCE)
    by_race = c3.toggle("Balance bin x ethnicity", value=False)
    fine_tune_layers = c4.number_input(
        "Fine-tune depth (layers)",
        0,
        1000,
        DEFAULTS["fine_tune_layers"],
        help=OPTIONS["fine_tune_layers"].help,
    )
    fine_tune_epochs = c4.number_input("Fine-tune epochs", 0, 1000, DEFAULTS["fine_tune_epochs"])
    augment = c4.toggle(
        "Augment", value=DEFAULTS["augment"], help="flip, rotation, zoom, contrast, brightness"
    )
    fast = c4.toggle("Fast mode", value=True, help=OPTIONS["fast"].help)
    c1, c2, c3, c4 = st.columns(4)
    name = c1.text_input("Run name", "", help="empty: the model name")
    folder = c2.text_input("Dataset folder", str(data_dir()))
    max_images = c3.number_input("Max images (0: all)", 0, 1_000_000, 0, help=OPTIONS["max_images"].help)
    recipe = c4.selectbox(
        "Recipe",
        ["none", *RECIPES],
        help="a preset (none: use the fields above). A recipe replaces the model fields above; add keys under More keys to change it",
    )
    extra = st.text_input("More keys", "", placeholder="e.g. age_head=regression loss_weight_age=0.1 seed=1")
    launched = st.form_submit_button("Launch", type="primary", icon=":material/rocket_launch:")

if launched:
    chosen = {
        "name": name,
        "data": folder,
        "max_images": max_images,
        "recipe": recipe,
    }
    if recipe == "none":
        chosen.update(
            model=model,
            weights=weights,
            image_size=image_size,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            bins=custom_edges if bins == "custom" else bins,
            rebalance=rebalance,
            rebalance_by_race=by_race,
            fine_tune_layers=fine_tune_layers,
            fine_tune_epochs=fine_tune_epochs,
            augment=augment,
            fast=fast,
            alpha=0.0 if alpha == "model default" else alpha,
        )
    try:
        chosen.update(parse_overrides(extra.split()))
        run_dir = runs.launch(chosen)
    except ConfigError as err:
        st.error(f"Not launched: {err}", icon=":material/error:")
    except OSError as err:  # a full disk or a read-only runs folder
        st.error(f"Not launched: cannot create the run folder in `{runs_dir()}`: {err.strerror or err}")
    else:
        st.session_state["watch"] = run_dir.name
        st.success(f"Launched `{run_dir}`", icon=":material/rocket_launch:")

all_runs = runs.list_runs()
any_active = any(r.state in runs.ACTIVE for r in all_runs)


@st.fragment(run_every=2 if any_active else None)
def live_view() -> None:
    current = runs.list_runs()
    if not current:
        st.info(f"No runs yet in `{runs_dir()}`. Configure one above and press Launch.")
        return
    names = [r.name for r in current]
    active = [r.name for r in current if r.state in runs.ACTIVE]
    wanted = st.session_state.get("watch") or (active[0] if active else names[0])
    watched = st.selectbox("Watch run", names, index=names.index(wanted) if wanted in names else 0)
    st.session_state["watch"] = watched
    run = next(r for r in current if r.name == watched)
    progress = run.progress
    st.markdown(
        f"**{run.name}** · `{run.state}` · {run.config.get('model')} · {run.status.get('device', '')}"
    )
    if run.state in runs.ACTIVE:
        done, total = progress.get("steps_done", 0), progress.get("steps_total") or 0
        st.progress(min(done / total, 1.0) if total else 0.0, text=runs.progress_text(progress))
        left, right = st.columns([1, 5])
        stop_label = "Kill" if run.status.get("stop_requested") else "Stop"
        if left.button(stop_label, icon=":material/stop_circle:", key=f"stop-{run.name}"):
            st.toast(f"{run.name}: {runs.stop(run.path)}")
        if run.status.get("stop_requested"):
            right.caption("Stopping after the current batch; press Kill to end it at once.")
    elif run.state in ("failed", "damaged"):
        st.error(run.status.get("error", "failed"))
    else:
        st.caption(
            f"{run.state} in {runs.format_seconds(run.duration_s or 0)}; "
            + ", ".join(f"{k}={v}" for k, v in run.metrics.items() if k.startswith("test_"))
        )
    history = run.history
    left, right = st.columns(2)
    if not history.empty:
        losses = [c for c in ("loss", "val_loss") if c in history]
        fig = px.line(
            history, x="epoch", y=losses, markers=True, title="Loss per epoch", hover_data=["stage"]
        )
        left.plotly_chart(fig, width="stretch", key=f"loss-{run.name}")
        accs = [c for c in history.columns if c.endswith("_acc")]
        fig = px.line(
            history, x="epoch", y=accs, markers=True, title="Accuracy per epoch", hover_data=["stage"]
        )
        right.plotly_chart(fig, width="stretch", key=f"acc-{run.name}")
    if progress.get("curve"):
        steps, losses = zip(*progress["curve"])
        fig = go.Figure(go.Scatter(x=steps, y=losses, mode="lines", name="batch loss"))
        fig.update_layout(title="Training loss by batch", xaxis_title="batch", yaxis_title="loss", height=280)
        st.plotly_chart(fig, width="stretch", key=f"batches-{run.name}")
    with st.expander("Log tail", expanded=run.state in runs.ACTIVE):
        st.code(run.log(40) or "(empty)", language=None)
    if any_active and not active:
        st.rerun(scope="app")  # the last run ended: refresh the runs table


st.header("Live view")
live_view()

st.header("Runs")
if not all_runs:
    st.stop()
table = runs.runs_table(all_runs)
event = st.dataframe(
    table.drop(columns="path"),
    hide_index=True,
    width="stretch",
    on_select="rerun",
    selection_mode="multi-row",
    key="runs_table",
    column_config={
        "bin_acc": st.column_config.NumberColumn("bin acc", format="%.3f"),
        "within_1_bin": st.column_config.NumberColumn("within 1 bin", format="%.3f"),
        "age_mae": st.column_config.NumberColumn("age MAE", format="%.2f"),
        "gender_acc": st.column_config.NumberColumn("gender acc", format="%.3f"),
        "duration_s": st.column_config.NumberColumn("duration (s)", format="%.0f"),
    },
)
selected = [all_runs[i] for i in event.selection.rows]
if not selected:
    st.caption("Select runs in the table to overlay their curves, open their config and log, or delete them.")
    st.stop()

metrics = runs.curve_metrics(selected)
if metrics:
    metric = st.selectbox("Compare", metrics)
    overlay = runs.overlay_frame(selected, metric)
    fig = px.line(overlay, x="epoch", y=metric, color="run", markers=True, hover_data=["stage"])
    st.plotly_chart(fig, width="stretch")

for run in selected:
    with st.expander(f"{run.name}: {run.state}"):
        config_tab, log_tab, metrics_tab = st.tabs(["Config", "Log", "Metrics"])
        config_tab.json(run.config)
        config_tab.caption(f"Repeat it: `python -m agelab train --config {run.path / 'config.json'}`")
        log_tab.code(run.log(200) or "(empty)", language=None)
        metrics_tab.json(run.metrics or {"metrics": "none yet"})

names = ", ".join(r.name for r in selected)
confirm = st.checkbox(f"Yes, delete {names} and all their files")
if st.button("Delete selected", icon=":material/delete:", disabled=not confirm):
    for run in selected:
        try:
            runs.delete_run(run.path)
        except (RuntimeError, ValueError) as err:
            st.error(str(err))
    st.rerun()
