"""The Review page's charts, as Plotly figures: the confusion matrix, the bin distances (near and
far misses on their own scales, so a far miss of one face is still a bar to click), two runs'
distances side by side, and one face's probability for every bin."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from agelab import palette
from agelab.evaluation.metrics import confusion, distance_distribution

# Misses of this many bins or more are drawn on panels of their own, with their own y range: beside
# hundreds of exact hits a few far misses were bars 1 px tall.
FAR = 3


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


def distance_figure(dist: pd.DataFrame) -> go.Figure:
    """Images per signed bin distance (:func:`~agelab.evaluation.metrics.distance_distribution`).

    The near misses (under :data:`FAR` bins) share the middle panel; the far under- and
    over-estimates get a panel each side, both on one y range of their own. Every bar says its count
    and carries its distance as ``x``, so a click on any panel filters the gallery to it.
    """
    near = dist[dist["distance"].abs() < FAR]
    far_under = dist[dist["distance"] <= -FAR]
    far_over = dist[dist["distance"] >= FAR]
    panels = [(near, "near")]
    if not far_under.empty:
        panels.insert(0, (far_under, "far"))
    if not far_over.empty:
        panels.append((far_over, "far"))
    widths = [max(len(part), 1) + (1 if kind == "far" else 2) for part, kind in panels]
    fig = make_subplots(
        rows=1, cols=len(panels), column_widths=widths, horizontal_spacing=0.06 if len(panels) > 1 else 0
    )
    far_top = max((int(part["count"].max()) for part, kind in panels if kind == "far"), default=1)
    for col, (part, kind) in enumerate(panels, start=1):
        for direction in ("under", "exact", "over"):
            bars = part[part["direction"] == direction]
            if bars.empty:
                continue
            fig.add_trace(
                go.Bar(
                    x=bars["distance"],
                    y=bars["count"],
                    name=palette.DIRECTION_NAMES[direction],
                    legendgroup=direction,
                    showlegend=not any(t.legendgroup == direction for t in fig.data),
                    marker_color=palette.DIRECTION[direction],
                    text=bars["count"],
                    textposition="outside",
                    cliponaxis=False,
                    customdata=bars["share"],
                    hovertemplate="%{x:+d} bins: %{y} images (%{customdata:.1%})<br>click to show them"
                    "<extra></extra>",
                ),
                row=1,
                col=col,
            )
        lo, hi = int(part["distance"].min()), int(part["distance"].max())
        fig.update_xaxes(
            dtick=1, tickformat="+d", range=[lo - 0.6, hi + 0.6], row=1, col=col,
            title_text="far misses" if kind == "far" else "bin distance (predicted - true)",
        )  # fmt: skip
        if kind == "far":
            fig.update_yaxes(range=[0, far_top * 1.25], row=1, col=col)
    fig.update_yaxes(title_text="images", row=1, col=1)
    fig.update_layout(
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
