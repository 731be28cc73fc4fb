"""A run as a person reads it: its progress line, a duration, and run histories overlaid on one chart.

The Train page and ``python -m agelab runs watch`` show these; the run's files come from :mod:`agelab.runs`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from agelab.metric_names import METRICS, SCORES, from_run_metrics
from agelab.runs import Run


def progress_text(progress: dict[str, Any]) -> str:
    """``"fine_tune: epoch 4/6, batch 120/242, ETA 3m 10s"``; the fast mode's one-time feature
    extraction reads ``"extracting features: batch 40/174, ETA 1m 05s"``. Until a few batches have
    set the pace, the ETA says it is being estimated (the first batch includes graph tracing)."""
    if not progress:
        return "waiting for the first batch"
    eta = progress.get("eta_s")
    eta_text = ", ETA estimating..." if eta is None else f", ETA {format_seconds(eta)}"
    batches = f"batch {progress.get('batch', 0)}/{progress.get('steps', '?')}{eta_text}"
    if progress.get("stage") == "features" or not progress.get("epochs_total"):
        return f"extracting features: {batches}"
    return (
        f"{progress.get('stage', '')}: epoch {progress.get('epoch', 0)}/{progress.get('epochs_total', '?')}, "
        + batches
    )


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def overlay_frame(selected: list[Run], metric: str) -> pd.DataFrame:
    """Long-form per-epoch values of ``metric`` for several runs, for one overlaid chart."""
    parts = []
    for run in selected:
        history = run.history
        if metric in history:
            parts.append(
                pd.DataFrame(
                    {
                        "run": run.name,
                        "epoch": history["epoch"],
                        "stage": history["stage"],
                        metric: history[metric],
                    }
                )
            )
    return (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=["run", "epoch", "stage", metric])
    )


def curve_metrics(selected: list[Run]) -> list[str]:
    """Metrics that can be overlaid: the numeric history columns, validation first."""
    names: set[str] = set()
    for run in selected:
        names.update(c for c in run.history.columns if c not in ("epoch", "stage", "seconds", "steps"))
    return sorted(names, key=lambda n: (not n.startswith("val_"), n))


def source_rows(selected: list[Run]) -> pd.DataFrame:
    """Each run's test scores per data source (``metrics.json``'s ``sources``), a row per run and source;
    empty when no selected run was trained on several sources."""
    rows = []
    for run in selected:
        sources = run.metrics.get("sources") if isinstance(run.metrics, dict) else None
        if not isinstance(sources, dict):
            continue
        for name, numbers in sources.items():
            if isinstance(numbers, dict):
                values = from_run_metrics(numbers)
                row = {"run": run.name, "source": name, METRICS["n"].header: values["n"]}
                rows.append(row | {METRICS[k].header: values[k] for k in SCORES})
    headers = [METRICS[k].header for k in ("n", *SCORES)]
    return pd.DataFrame(rows, columns=["run", "source", *headers])


def test_scores_text(metrics: dict[str, Any]) -> str:
    """A run's test scores in words: ``"test split (3,228 faces): exact group 62.3 %, within one 96.3 %,
    age MAE 4.47 years, gender 94.3 %"``; empty when it has none."""

    def number(key: str) -> float | None:
        value = metrics.get(key)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    parts = []
    for name in SCORES:
        m = METRICS[name]
        value = number(m.run_key)
        if value is not None:
            parts.append(f"{m.label} {100 * value:.1f} %" if m.percent else f"{m.label} {value:.2f} years")
    if not parts:
        return ""
    n = number("n_test")
    return ("test split" + (f" ({int(n):,} faces)" if n else "") + ": ") + ", ".join(parts)
