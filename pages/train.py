"""Train: configure and launch runs, watch them live, stop them, and compare them."""

from __future__ import annotations

from pathlib import Path

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from agelab import launchers, palette, run_display, run_status, runs, sweep_compare, sweeps, train_form
from agelab.bins import BUILTIN_SCHEMES
from agelab.config import MODELS, OPTIONS, REBALANCE, RECIPES, ConfigError, parse_overrides
from agelab.data_sources import comma_list, discover_sources, source_roots
from agelab.evaluation.shared_split import with_shared_scores
from agelab.launchers import LaunchError
from agelab.paths import data_dir, runs_dir
from agelab.training import checkpoints, devices
from agelab.training.resume import launch_resume
from page_parts.shared_scores import rescore_offer
from streamlit_setup import through_app

through_app()

RESUME_HELP = "Continue this run from its last epoch's checkpoint, in its folder, with its own config"


@st.cache_data(ttl=300, show_spinner=False)
def gpu_status() -> tuple[bool, str]:
    return devices.gpu_status()


@st.cache_data(ttl=60, show_spinner=False)
def known_sources(roots: tuple[str, ...]) -> list:
    # The roots are the cache key: a changed mirror or data folder is looked at again.
    return discover_sources([Path(root) for root in roots])


st.title("Train")
has_gpu, gpu_text = gpu_status()
(st.success if has_gpu else st.info)(gpu_text, icon=":material/memory:")

st.subheader("New run")
# Outside the form, so that picking a recipe refills the fields below with the values it will run.
recipe = st.selectbox(
    "Recipe",
    ["none", *RECIPES],
    key="tr_recipe",
    help="A preset: it fills the fields below, which you may still change (none: the defaults)",
)
base = train_form.first_values(recipe)
if recipe != "none":
    st.caption(
        f"Recipe `{recipe}`: " + ", ".join(f"{k}={v}" for k, v in RECIPES[recipe].items()) + ". "
        "The fields show it; what you change below overrides it."
    )


def index_of(options, value, fallback: int = 0) -> int:
    return list(options).index(value) if value in options else fallback


def draw(field: train_form.Field, column):
    """The field's widget, as the option table describes it."""
    common = {"help": field.help, "disabled": field.disabled}
    if field.widget == "selectbox":
        return column.selectbox(
            field.label, field.options, index=index_of(field.options, field.value), **common
        )
    if field.widget == "checkbox":
        return column.checkbox(field.label, value=bool(field.value), **common)
    if field.widget == "number_input":
        return column.number_input(
            field.label,
            field.minimum,
            field.maximum,
            field.value,
            field.step,
            format=field.number_format,
            **common,
        )
    return column.text_input(field.label, field.value, **common)


# The choices that decide which fields below apply sit outside the form: a form's fields cannot change
# (here: be enabled or disabled) until it is submitted.
d1, d2, d3, d4 = st.columns(4)
model = d1.selectbox("Model", MODELS, index=index_of(MODELS, base["model"]), help=OPTIONS["model"].help)
bin_options = [*BUILTIN_SCHEMES, train_form.CUSTOM_BINS]
bins = d2.selectbox(
    "Age bins",
    bin_options,
    index=index_of(bin_options, base["bins"], len(bin_options) - 1),
    help=OPTIONS["bins"].help,
)
rebalance = d3.selectbox(
    "Rebalance", REBALANCE, index=index_of(REBALANCE, base["rebalance"]), help=OPTIONS["rebalance"].help
)
fine_tune_layers = d4.number_input(
    "Fine-tune depth (layers)", 0, 1000, base["fine_tune_layers"], help=OPTIONS["fine_tune_layers"].help
)
choices = {"model": model, "bins": bins, "rebalance": rebalance, "fine_tune_layers": fine_tune_layers}
start = {"data": st.session_state.get("data_folder", str(data_dir()))}

# Enter in a field must not launch a run: runs cost minutes of CPU, so only the button launches.
with st.form("config", enter_to_submit=False):
    values = {}
    for group, fields in train_form.sections(recipe, choices, start).items():
        with st.expander(train_form.TITLES[group], expanded=group in train_form.OPEN_GROUPS):
            columns = st.columns(2 if group == "data" else 4)
            for i, field in enumerate(fields):
                values[field.key] = draw(field, columns[i % len(columns)])
            if group == "data":
                more_sources = st.multiselect(
                    "More sources",
                    [str(p) for p in known_sources(tuple(str(root) for root in source_roots()))],
                    help="Training folders found beside the dataset folder and in the mirror (AGELAB_MIRROR);"
                    " folders whose SOURCE.md says evaluation only are never offered",
                )
    extra = st.text_input(
        "More keys",
        "",
        placeholder="e.g. age_head=regression loss_weight_age=0.1 seed=1 exclude=marks.csv num_cpus=2",
    )
    c1, c2, c3 = st.columns([2, 3, 1])
    ray_field = c1.text_input(
        "Ray address",
        launchers.ray_address(),
        placeholder="empty: this machine; e.g. 10.0.0.5:8265",
        help="A Ray head's dashboard address: runs become Ray jobs (default AGELAB_RAY_ADDRESS). The runs"
        " folder must be on storage this machine and the cluster both see (AGELAB_RUNS_DIR).",
    )
    sweep_text = c2.text_input(
        "Sweep (grid of runs)",
        "",
        placeholder="e.g. seed=0,1 learning_rate=0.001,0.0003: every combination over the fields above",
    )
    max_concurrent = c3.number_input(
        "At once", 0, 64, 0, help="runs at the same time (0: 1 on this machine, no limit on Ray)"
    )
    b1, b2 = st.columns([1, 5])
    launched = b1.form_submit_button("Launch", type="primary", icon=":material/rocket_launch:")
    sweep_launched = b2.form_submit_button("Launch sweep", icon=":material/grid_view:")

address = launchers.ray_address(ray_field)
if address and (missing := launchers.ray_missing(address)):
    st.warning(missing, icon=":material/warning:")

if launched or sweep_launched:
    # What the form shows is what runs: the fields that differ from the recipe's values are sent over it.
    folder = values["data"]
    values["data"] = ",".join([folder, *(s for s in more_sources if s not in comma_list(folder))])
    chosen = train_form.overrides(recipe, choices, values)
    try:
        chosen.update(parse_overrides(extra.split()))
        if sweep_launched:
            grid, fixed = sweeps.parse_grid(sweep_text.split())
            if not grid:
                raise ConfigError("the sweep lists no key with several values; e.g. seed=0,1")
            sweep_dir = sweeps.create_sweep(
                grid,
                {**chosen, **fixed},
                name=chosen.get("name") or "sweep",
                ray_address=address,
                max_concurrent=max_concurrent or None,
            )
            sweeps.start_detached(sweep_dir)
            st.session_state["sweep"] = sweep_dir.name
        else:
            run_dir = launchers.get_launcher(address).submit(chosen)
    except (ConfigError, LaunchError) as err:
        st.error(f"Not launched: {err}", icon=":material/error:")
    except OSError as err:  # a full disk or a read-only runs folder
        st.error(f"Not launched: cannot create the run folder in `{runs_dir()}`: {err.strerror or err}")
    else:
        if sweep_launched:
            st.success(f"Sweep `{sweep_dir}` started", icon=":material/grid_view:")
        else:
            st.session_state["watch"] = run_dir.name
            st.success(f"Launched `{run_dir}`", icon=":material/rocket_launch:")

all_runs = launchers.list_runs()
any_active = any(r.state in run_status.ACTIVE for r in all_runs)


def epoch_figure(history, columns: list[str], quantity: str, color: str | None = None):
    """Per-epoch curves with whole-epoch ticks, a named y axis and readable legend entries."""
    fig = px.line(
        history,
        x="epoch",
        y=columns if color is None else columns[0],
        color=color,
        markers=True,
        title=f"{quantity.capitalize()} per epoch",
        hover_data=["stage"],
        labels={"value": quantity, "variable": "", columns[0]: quantity},
    )
    if color is None:  # one trace per column: name them in words ("validation loss")
        fig.for_each_trace(lambda t: t.update(name=palette.title(t.name)))
    epochs = int(history["epoch"].max()) if len(history) else 1
    fig.update_xaxes(tick0=1, dtick=max(1, -(-epochs // 12)), tickformat="d")
    fig.update_layout(legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0, "title": ""})
    return fig


@st.fragment(run_every=2 if any_active else None)
def live_view() -> None:
    current = launchers.list_runs()
    if not current:
        st.info(f"No runs yet in `{runs_dir()}`. Configure one above and press Launch.")
        return
    names = [r.name for r in current]
    active = [r.name for r in current if r.state in run_status.ACTIVE]
    wanted = st.session_state.get("watch") or (active[0] if active else names[0])
    watched = st.selectbox("Watch run", names, index=names.index(wanted) if wanted in names else 0)
    st.session_state["watch"] = watched
    run = next(r for r in current if r.name == watched)
    progress = run.progress
    where = f" · Ray job `{run.status.get('job_id')}`" if run.status.get("launcher") == "ray" else ""
    st.markdown(
        f"**{run.name}** · `{run.state}` · {run.config.get('model')} · {run.status.get('device', '')}{where}"
    )
    if warning := launchers.not_visible_warning(run):
        st.warning(warning, icon=":material/folder_off:")
    launcher = launchers.launcher_for(run.path, run.status)
    if run.state in run_status.ACTIVE:
        done, total = progress.get("steps_done", 0), progress.get("steps_total") or 0
        st.progress(min(done / total, 1.0) if total else 0.0, text=run_display.progress_text(progress))
        left, right = st.columns([1, 5])
        stop_label = "Kill" if run.status.get("stop_requested") else "Stop"
        if left.button(stop_label, icon=":material/stop_circle:", key=f"stop-{run.name}"):
            try:
                st.toast(f"{run.name}: {launcher.stop(run.path)}")
            except LaunchError as err:
                st.error(str(err))
        if run.status.get("stop_requested"):
            right.caption("Stopping after the current batch; press Kill to end it at once.")
    elif run.state in ("failed", "damaged", "lost"):
        (st.warning if run.state == "lost" else st.error)(run.status.get("error", run.state))
    else:
        st.caption(
            f"{run.state} in {run_display.format_seconds(run.duration_s or 0)}; "
            + run_display.test_scores_text(run.metrics)
        )
    if run.state in run_status.RESUMABLE and checkpoints.saved(run.path):
        if st.button("Resume", icon=":material/play_circle:", key=f"resume-{run.name}", help=RESUME_HELP):
            try:
                launch_resume(run.path)
                st.toast(f"{run.name}: resuming from its last checkpoint")
            except ConfigError as err:
                st.error(str(err))
    history = run.history
    left, right = st.columns(2)
    if not history.empty:
        losses = [c for c in ("loss", "val_loss") if c in history]
        if losses:  # a hand-edited or partial history.csv may lack either kind of column
            left.plotly_chart(epoch_figure(history, losses, "loss"), width="stretch", key=f"loss-{run.name}")
        accs = [c for c in history.columns if c.endswith("_acc")]
        if accs:
            right.plotly_chart(
                epoch_figure(history, accs, "accuracy"), width="stretch", key=f"acc-{run.name}"
            )
    if progress.get("curve"):
        steps, losses = zip(*progress["curve"])
        fig = go.Figure(go.Scatter(x=steps, y=losses, mode="lines", name="batch loss"))
        fig.update_layout(title="Training loss by batch", xaxis_title="batch", yaxis_title="loss", height=280)
        st.plotly_chart(fig, width="stretch", key=f"batches-{run.name}")
    with st.expander("Log tail", expanded=run.state in run_status.ACTIVE):
        st.code(launcher.logs(run.path, 40) or "(empty)", language=None, wrap_lines=True)
    if any_active and not active:
        st.rerun(scope="app")  # the last run ended: refresh the runs table


st.header("Live view")
live_view()

st.header("Runs")


# Refreshed with the live view, so the table never says "queued" while the run above is "running".
@st.fragment(run_every=2 if any_active else None)
def runs_section() -> None:
    current = launchers.list_runs()
    if not current:
        return
    # A run scored on the shared test split (the offer below) is shown with those scores.
    table = with_shared_scores(runs.runs_table(current))
    event = st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        on_select="rerun",
        selection_mode="multi-row",
        key="runs_table",
        # What fits the page; the path is in each run's Config tab.
        column_order=[c for c in table.columns if c != "path"],
        column_config={
            "run": st.column_config.TextColumn(width="medium"),
            "status": st.column_config.TextColumn(width="small"),
            "size": st.column_config.NumberColumn(width=50),
            "fast": st.column_config.CheckboxColumn(width=50),
            "epochs": st.column_config.NumberColumn(width=60),
            "bin_acc": st.column_config.NumberColumn("bin acc", format="%.3f", width=70),
            "within_1_bin": st.column_config.NumberColumn("within 1", format="%.3f", width=70),
            "age_mae": st.column_config.NumberColumn("age MAE", format="%.2f", width=70),
            "gender_acc": st.column_config.NumberColumn("gender acc", format="%.3f", width=80),
            "test_images": st.column_config.NumberColumn("test images", format="%d", width=80),
            "test_set": st.column_config.TextColumn("test set", width="small"),
            "scored_on_split": st.column_config.TextColumn("scored on", width="small"),
            "duration_s": st.column_config.NumberColumn("duration (s)", format="%.0f", width=90),
            "device": st.column_config.TextColumn(width="small"),
            "job_id": st.column_config.TextColumn("Ray job", width="small"),
            "address": st.column_config.TextColumn("cluster", width="small"),
        },
    )
    selected = [current[i] for i in event.selection.rows if i < len(current)]
    if warning := runs.test_set_warning(table.iloc[[i for i in event.selection.rows if i < len(table)]]):
        st.warning(warning, icon=":material/compare_arrows:")
        rescore_offer([r.path for r in selected], "tr_rescore")
    if not selected:
        st.caption(
            "Select runs in the table to overlay their curves, open their config and log, or delete them."
        )
        return

    metrics = run_display.curve_metrics(selected)
    if metrics:
        metric = st.selectbox("Compare", metrics, format_func=palette.title)
        overlay = run_display.overlay_frame(selected, metric)
        fig = epoch_figure(overlay, [metric], palette.title(metric), color="run")
        st.plotly_chart(fig, width="stretch")

    by_source = run_display.source_rows(selected)
    if not by_source.empty:
        st.markdown("**Test scores by data source**")
        st.dataframe(by_source, hide_index=True, width="stretch")

    for run in selected:
        with st.expander(f"{run.name}: {run.state}"):
            config_tab, log_tab, metrics_tab = st.tabs(["Config", "Log", "Metrics"])
            config_tab.json(run.config)
            config_tab.caption(f"Repeat it: `python -m agelab train --config {run.path / 'config.json'}`")
            log_tab.code(run.log(200) or "(empty)", language=None, wrap_lines=True)
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


runs_section()


st.header("Sweeps")


@st.fragment(run_every=2 if any_active else None)
def sweeps_section() -> None:
    found = sweeps.list_sweeps()
    if not found:
        st.caption(
            "No sweeps yet: list values in the Sweep field above (e.g. seed=0,1) and press Launch sweep."
        )
        return
    names = [s["name"] for s in found]
    wanted = st.session_state.get("sweep")
    chosen = st.selectbox("Sweep", names, index=names.index(wanted) if wanted in names else 0)
    st.session_state["sweep"] = chosen
    sweep = next(s for s in found if s["name"] == chosen)
    state = sweeps.sweep_state(sweep)
    counts = {k: sum(e["state"] == k for e in sweep["runs"]) for k in sweeps.ENTRY_STATES}
    where = sweep.get("ray_address") or "this machine"
    st.markdown(
        f"**{chosen}** · `{state}` · {len(sweep['runs'])} runs on {where}, at most"
        f" {sweep.get('max_concurrent') or 'no limit'} at once · "
        + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items() if n)
    )
    if state == "damaged":
        st.error(sweep.get("error") or f"{chosen}: its sweep.json cannot be read", icon=":material/error:")
        return
    if state == "interrupted":
        st.warning(
            f"Its scheduler ended with runs still queued: `python -m agelab sweep --resume {sweep['path']}`"
        )
    if state in ("pending", "running") and st.button("Stop sweep", icon=":material/stop_circle:"):
        st.toast(f"{chosen}: {sweeps.stop_sweep(sweep['path'])}")
    table = sweep_compare.compare(sweep)
    keys = list(sweep.get("grid", {}))
    st.dataframe(table, hide_index=True, width="stretch")
    metrics = [m for m in (*sweep_compare.VAL_METRICS, *sweep_compare.TEST_METRICS) if table[m].notna().any()]
    if metrics:
        metric = st.selectbox("Compare on", metrics, format_func=palette.title, key="sweep_metric")
        st.plotly_chart(sweep_compare.comparison_figure(table, keys, metric), width="stretch")


sweeps_section()
