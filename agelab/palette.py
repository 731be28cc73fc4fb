"""One set of colours and axis titles for every page: gender, ethnicity, age bins, bin distance.

A colour means the same thing on every chart: Female is always the same red, the Indian bars the
same purple, bin 3 of any scheme the same shade. Plotly takes the hex strings; OpenCV drawings take
:func:`rgb`.
"""

from __future__ import annotations

from collections.abc import Sequence

GENDER = {"Male": "#4C78A8", "Female": "#E45756"}
# The one order of the genders on every chart and table: the codes' order (0 Male, 1 Female), which
# the slices of Review and the filters already follow.
GENDER_ORDER = tuple(GENDER)
ETHNICITY = {
    "White": "#72B7B2",
    "Black": "#B279A2",
    "Asian": "#F58518",
    "Indian": "#9D755D",
    "Others": "#BAB0AC",
    "Unknown": "#D9D9D9",  # a labelled folder without an ethnicity column
}
# Over- and under-estimates, and the exact hits, in the bin-distance charts.
DIRECTION = {"under": "#4C78A8", "exact": "#54A24B", "over": "#E45756"}
DIRECTION_NAMES = {"under": "under-estimate", "exact": "exact", "over": "over-estimate"}
# Ordinal age bins: light (young) to dark (old), sampled from one sequential scale (viridis).
_BIN_SCALE = (
    "#FDE725",
    "#B5DE2B",
    "#6ECE58",
    "#35B779",
    "#1F9E89",
    "#26828E",
    "#31688E",
    "#3E4989",
    "#482878",
    "#440154",
)
# Readable names for the columns that reach a chart's axis or legend.
TITLES = {
    "gender_name": "gender",
    "gender_label": "gender",
    "race_name": "ethnicity",
    "ethnicity": "ethnicity",
    "bin_label": "age bin",
    "true_label": "true age bin",
    "pred_label": "predicted age bin",
    "age": "age (years)",
    "images": "images",
    "when": "",
    "val_loss": "validation loss",
    "loss": "training loss",
}


def bin_colors(labels: Sequence[str]) -> dict[str, str]:
    """A colour per bin label, spread evenly over the sequential scale (young light, old dark)."""
    k = len(labels)
    if k == 0:
        return {}
    last = len(_BIN_SCALE) - 1
    return {label: _BIN_SCALE[round(i * last / (k - 1)) if k > 1 else 0] for i, label in enumerate(labels)}


def rgb(hex_color: str) -> tuple[int, int, int]:
    """``"#E45756"`` -> ``(228, 87, 86)``, for drawing on RGB images."""
    value = hex_color.lstrip("#")
    if len(value) != 6:
        raise ValueError(f"colour {hex_color!r}: expected #RRGGBB")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def title(column: str) -> str:
    """The axis or legend title of a column: ``"race_name"`` -> ``"ethnicity"``."""
    return TITLES.get(column, column.replace("_", " "))
