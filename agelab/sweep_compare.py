"""Comparing a sweep's runs: one row per run (its swept values, state, validation metrics at its best
epoch, test metrics, the best run starred), as a table for the terminal and a figure for the Train page.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from agelab import runs
from agelab.metric_names import TEST_KEYS

# The validation metrics a sweep is compared on (at each run's best epoch), lower-is-better first.
VAL_METRICS = ("val_loss", "val_age_bin_acc", "val_gender_acc", "val_age_mae")
LOWER_IS_BETTER = {"val_loss", "val_age_mae", "test_age_mae"}
TEST_METRICS = TEST_KEYS


def best_epoch_row(run: runs.Run) -> dict[str, Any]:
    """The validation metrics at the run's best epoch (lowest ``val_loss``); ``{}`` before its first epoch."""
    history = run.history
    if history.empty or "val_loss" not in history or history["val_loss"].isna().all():
        return {}
    row = history.loc[history["val_loss"].idxmin()]
    return {m: float(row[m]) for m in VAL_METRICS if m in row and pd.notna(row[m])}


def compare(sweep: dict[str, Any]) -> pd.DataFrame:
    """One row per run of the sweep: its swept values, state, validation metrics at its best epoch,
    test metrics, and ``best`` (True on the finished run with the lowest best ``val_loss``)."""
    keys = list(sweep.get("grid", {}))
    rows = []
    for entry in sweep["runs"]:
        row: dict[str, Any] = {
            "index": entry["index"],
            **entry["overrides"],
            "run": None,
            "state": entry["state"],
        }
        if entry["state"] == "launched" and entry.get("run"):
            try:
                run = runs.load_run(entry["run"])
            except FileNotFoundError:
                row["state"] = "missing"
            else:
                row.update(run=run.name, state=run.state, duration_s=run.duration_s)
                row.update(best_epoch_row(run))
                row.update({m: run.metrics.get(m) for m in TEST_METRICS})
        rows.append(row)
    table = pd.DataFrame(rows, columns=["index", *keys, "run", "state"] if not rows else None)
    for column in ("duration_s", *VAL_METRICS, *TEST_METRICS):
        if column not in table:
            table[column] = float("nan")
    table["best"] = False
    done = table[(table["state"] == "finished") & table["val_loss"].notna()]
    if not done.empty:
        table.loc[done["val_loss"].astype(float).idxmin(), "best"] = True
    return table[["index", *keys, "run", "state", "best", *VAL_METRICS, *TEST_METRICS, "duration_s"]]


def comparison_figure(table: pd.DataFrame, keys: list[str], metric: str = "val_loss"):
    """A scatter of ``metric`` against the first swept key, coloured by the second (the rest in the
    hover), with the best run marked by a star and named."""
    import plotly.express as px
    import plotly.graph_objects as go

    from agelab import palette

    data = table[table[metric].notna()].copy() if metric in table else table.iloc[0:0]
    x = keys[0] if keys else "index"
    color = keys[1] if len(keys) > 1 else None
    for key in [x, *([color] if color else [])]:
        data[key] = data[key].astype(str)
    fig = px.scatter(
        data,
        x=x,
        y=metric,
        color=color,
        hover_data=["run", *keys[2:], *[m for m in VAL_METRICS if m != metric]],
        labels={metric: palette.title(metric)},
        title=f"{palette.title(metric)} by {x}" + (f" and {color}" if color else ""),
    )
    fig.update_traces(marker={"size": 12})
    best = data[data["best"]]
    if not best.empty:
        row = best.iloc[0]
        fig.add_trace(
            go.Scatter(
                x=[row[x]],
                y=[row[metric]],
                mode="markers+text",
                marker={
                    "symbol": "star",
                    "size": 22,
                    "color": "gold",
                    "line": {"width": 1, "color": "black"},
                },
                text=[f"best: {row['run']}"],
                textposition="top center",
                name="best (lowest val loss)",
            )
        )
    fig.update_xaxes(type="category")
    return fig


def format_table(table: pd.DataFrame) -> str:
    shown = table.drop(columns=["duration_s"]).copy()
    shown["best"] = shown["best"].map({True: "*", False: ""})
    return shown.to_string(index=False, float_format=lambda v: f"{v:.4g}")
