"""Age-bin schemes: ordinal groups of ages, so a mistake can be measured in bins."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_AGE = 116


@dataclass(frozen=True)
class BinScheme:
    """Ordinal age bins. ``edges`` are inclusive lower bounds; the last bin is open-ended."""

    name: str
    edges: tuple[int, ...]
    names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _validate_edges(self.edges)
        if self.names is not None and len(self.names) != len(self.edges):
            raise ValueError(f"bin scheme {self.name!r}: {len(self.names)} names for {len(self.edges)} bins")

    @property
    def num_bins(self) -> int:
        return len(self.edges)

    @property
    def ranges(self) -> list[str]:
        """Age ranges such as ``"4-8"`` and, for the open-ended last bin, ``"59+"``."""
        uppers = [e - 1 for e in self.edges[1:]]
        out = [f"{lo}-{hi}" if hi > lo else f"{lo}" for lo, hi in zip(self.edges, uppers)]
        return out + [f"{self.edges[-1]}+"]

    @property
    def labels(self) -> list[str]:
        """Display labels: ``"Child (4-8)"`` for named schemes, the range otherwise."""
        if self.names is None:
            return self.ranges
        return [f"{n} ({r})" for n, r in zip(self.names, self.ranges)]

    @property
    def spec(self) -> str:
        """The string that recreates this scheme with :func:`get_scheme`."""
        return self.name if self.name in BUILTIN_SCHEMES else ",".join(map(str, self.edges))

    def bin_of(self, ages: np.ndarray | list[float] | float) -> np.ndarray:
        """Ordinal bin index of each age (ages below 0 go to bin 0)."""
        ages = np.asarray(ages, dtype=float)
        return np.clip(np.searchsorted(self.edges, np.floor(ages), side="right") - 1, 0, self.num_bins - 1)

    def bin_centers(self) -> np.ndarray:
        """A representative age per bin, for turning bin probabilities into an age."""
        uppers = list(self.edges[1:]) + [max(self.edges[-1] + 10, 80)]
        return np.array([(lo + hi - 1) / 2 for lo, hi in zip(self.edges, uppers)], dtype=float)

    @staticmethod
    def distance(true_bin: np.ndarray | int, pred_bin: np.ndarray | int) -> np.ndarray:
        """Signed bin distance, predicted minus true: positive means over-estimated."""
        return np.asarray(pred_bin) - np.asarray(true_bin)


def _validate_edges(edges: tuple[int, ...]) -> None:
    if len(edges) < 2:
        raise ValueError(
            f"bin edges {list(edges)}: need at least 2 edges (2 bins), e.g. bins=0,3,13,20,40,60"
        )
    if edges[0] != 0:
        raise ValueError(f"bin edges {list(edges)}: the first edge must be 0 so that every age has a bin")
    if any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"bin edges {list(edges)}: edges must be strictly increasing integers")
    if edges[-1] > MAX_AGE:
        raise ValueError(f"bin edges {list(edges)}: the last edge must be at most {MAX_AGE}")


# The original project's ten named life stages, Baby 0-1 ... Senior 59+: the shipped model's bins.
GROUPS10 = BinScheme(
    "groups10",
    (0, 2, 4, 9, 14, 19, 25, 35, 45, 59),
    (
        "Baby",
        "Toddler",
        "Child",
        "Adolescent",
        "Teenager",
        "Young Adult",
        "Adult",
        "Mature Adult",
        "Middle Age",
        "Senior",
    ),
)
# Equal-count bins on UTKFace; the first bin reads 1-3 because UTKFace has no age 0.
EQUAL12 = BinScheme("equal12", (0, 4, 11, 18, 23, 27, 33, 38, 46, 54, 63, 74))
DECADES = BinScheme("decades", tuple(range(0, 101, 10)))

BUILTIN_SCHEMES: dict[str, BinScheme] = {s.name: s for s in (GROUPS10, EQUAL12, DECADES)}
# Names that saved runs and model sidecars written before the rename still carry; they load as the
# new scheme, whose ``spec`` (the new name) is what new runs write.
RENAMED_SCHEMES = {"seed10": "groups10"}


def is_scheme_name(text: str) -> bool:
    """Whether ``text`` names a built-in scheme (under its current or its old name)."""
    return text.strip() in BUILTIN_SCHEMES or text.strip() in RENAMED_SCHEMES


def get_scheme(spec: str | BinScheme) -> BinScheme:
    """A scheme by name (``groups10``, ``equal12``, ``decades``) or by edges (``"0,3,13,20,40,60"``)."""
    if isinstance(spec, BinScheme):
        return spec
    spec = str(spec).strip()
    spec = RENAMED_SCHEMES.get(spec, spec)
    if spec in BUILTIN_SCHEMES:
        return BUILTIN_SCHEMES[spec]
    parts = [p.strip() for p in spec.split(",")]
    if len(parts) < 2:
        raise ValueError(
            f"unknown bin scheme {spec!r}: use one of {', '.join(BUILTIN_SCHEMES)} "
            "or comma-separated edges such as 0,3,13,20,40,60"
        )
    try:
        edges = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"bin edges {spec!r}: every edge must be an integer, e.g. 0,3,13,20,40,60") from None
    return BinScheme(spec, edges)
