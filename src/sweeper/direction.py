"""Which way a metric improves: the spec's `mode` (and each objective's), as one type that every comparison of metric
values asks, so that "higher is better" is decided in one place.

    >>> Direction.MIN.better(0.2, than=0.3), Direction("max").better(0.2, than=0.3)
    (True, False)
    >>> Direction.MAX.best_first([0.1, 0.7, 0.4], key=float)
    [0.7, 0.4, 0.1]
    >>> Direction.MIN.optuna, Direction.MIN.phrase, Direction.MAX.score(0.7), Direction.MIN.score(0.7)
    ('minimize', 'lower is better', 0.7, -0.7)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Literal, TypeVar

Item = TypeVar("Item")


class Direction(StrEnum):
    """`max` (higher is better) or `min`; a str, so it is written and logged as the spec writes it."""

    MAX = "max"
    MIN = "min"

    def score(self, value: float) -> float:
        """`value` turned so that higher is better."""
        return value if self is Direction.MAX else -value

    def better(self, value: float, than: float) -> bool:
        """Whether `value` strictly beats `than`."""
        return self.score(value) > self.score(than)

    def best_first(self, items: Iterable[Item], key: Callable[[Item], float]) -> list[Item]:
        """`items` sorted best first by `key` (a stable sort: ties keep their order)."""
        return sorted(items, key=lambda item: -self.score(key(item)))

    def best(self, items: Iterable[Item], key: Callable[[Item], float]) -> Item:
        """The best of `items` by `key` (the first of equals)."""
        return max(items, key=lambda item: self.score(key(item)))

    @property
    def optuna(self) -> str:
        """Optuna's name for it: `maximize` or `minimize`."""
        return "maximize" if self is Direction.MAX else "minimize"

    @property
    def phrase(self) -> str:
        return "higher is better" if self is Direction.MAX else "lower is better"


Mode = Literal["max", "min"]  # how a spec, a trial config and MLflow tags write a direction: plain text for Ray and YAML
Objectives = list[tuple[str, Mode]]  # (metric, mode) per objective; empty for a single-objective study
