"""The stage plan: every stage's name, epochs and steps, fixed before the first one starts, for
progress and ETA."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol


class Planned(Protocol):
    name: str
    epochs: int
    steps: int


@dataclass(frozen=True)
class Plan:
    """Stages and their sizes, for progress and ETA."""

    stages: tuple[tuple[str, int, int], ...] = field(default_factory=tuple)  # (name, epochs, steps)

    @classmethod
    def of(cls, stages: Iterable[Planned]) -> Plan:
        return cls(tuple((stage.name, stage.epochs, stage.steps) for stage in stages))

    @property
    def total_epochs(self) -> int:
        return sum(e for _, e, _ in self.stages)

    @property
    def total_steps(self) -> int:
        return sum(e * s for _, e, s in self.stages)
