"""One vocabulary of headline metrics, and the one table from it to every other spelling.

The vocabulary is :func:`agelab.evaluation.metrics.headline`'s: ``exact``, ``within1``, ``mae``,
``gender_acc``, ``n``. A run's ``metrics.json`` stores them under older keys (``test_bin_accuracy``
...) and the runs table shows them under its column names (``bin_acc`` ...); files already written
keep those keys, so they are read through :data:`METRICS` rather than renamed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MetricName:
    name: str  # the vocabulary's own name
    run_key: str  # the key in a run's metrics.json
    column: str  # the runs table's column
    label: str  # how a sentence says it
    header: str  # a short table header
    places: int | None  # rounding in metrics.json (None: a count)
    percent: bool


METRICS: dict[str, MetricName] = {
    m.name: m
    for m in (
        MetricName("exact", "test_bin_accuracy", "bin_acc", "exact group", "bin acc", 4, True),
        MetricName("within1", "test_within_one_bin", "within_1_bin", "within one", "within 1", 4, True),
        MetricName("mae", "test_age_mae", "age_mae", "age MAE", "age MAE", 3, False),
        MetricName("gender_acc", "test_gender_accuracy", "gender_acc", "gender", "gender acc", 4, True),
        MetricName("n", "n_test", "test_images", "faces", "images", None, False),
    )
}
# The four test scores of a run (without the count), in the order tables show them.
SCORES = ("exact", "within1", "mae", "gender_acc")
RUN_KEYS = {name: m.run_key for name, m in METRICS.items()}
TEST_KEYS = tuple(RUN_KEYS[name] for name in SCORES)


def from_run_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """A run's ``metrics.json`` (or one source's part of it) in the vocabulary; missing keys are None."""
    return {name: metrics.get(m.run_key) for name, m in METRICS.items()}
