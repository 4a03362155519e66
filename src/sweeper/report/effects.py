"""The effect of every searched factor: its levels' best trials compared on the same validation commits.

For each searched key (method, features, lora.rank, adapter.placement, precision, ...) the completed trials are
grouped by their value of it (numeric keys in bins: per decade on a log scale, else tertiles of the values tried),
and the best level's best trial is compared with every other level's best trial: the paired bootstrap difference on
the same commits (AUC and the other classification metrics; for message generation per-commit sentence B-Norm BLEU
resampled), and Welch's test over their repeats where both were repeated. A factor has a clear effect when one of
these differences is resolved (`resolved`). The levels' best trials differ in the other searched keys too: an effect
is "the best configuration with this value against the best with that one", which is the question a user choosing
a value asks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sweeper.metrics.bootstrap import Difference, RepeatComparison, compare_repeats, resolved
from sweeper.report.analysis import best_per, paired, repeats_of
from sweeper.recorded.notes import short_number
from sweeper.recorded.sweeps import SweepDetails, TrialRun, searched_keys, searched_params

TERTILES = 3  # bins of a linear numeric key


@dataclass(frozen=True)
class Comparison:
    """A - B: which factor (or `baseline`, `choice`), the two sides' names and runs, the paired difference on the same
    commits (None: no predictions to pair), Welch over their repeats (None: fewer than two a side) and `side`, the
    resolved sign (+1 A better, -1 B better, 0 not resolved)."""

    factor: str
    name_a: str
    name_b: str
    a: TrialRun
    b: TrialRun
    difference: Difference | None
    repeats: RepeatComparison | None
    side: int

    def as_dict(self) -> dict[str, object]:
        found = self.difference
        return {"factor": self.factor, "a": self.name_a, "b": self.name_b, "run_a": self.a.run_id,
                "run_b": self.b.run_id, "difference": found.value if found else None,
                "low": found.low if found else None, "high": found.high if found else None,
                "welch_p": None if self.repeats is None or math.isnan(self.repeats.p_value) else self.repeats.p_value,
                "seeds": [self.repeats.n_a, self.repeats.n_b] if self.repeats else None, "resolved": self.side}


@dataclass(frozen=True)
class Factor:
    """One searched key: its levels' best trials (best first) and the best level against each other level."""

    key: str
    levels: list[tuple[str, TrialRun]]
    comparisons: list[Comparison]

    @property
    def clear(self) -> bool:
        return any(comparison.side for comparison in self.comparisons)

    def strongest(self) -> Comparison | None:
        """The largest resolved difference, or None."""
        found = [c for c in self.comparisons if c.side and c.difference is not None]
        return max(found, key=lambda c: abs(c.difference.value), default=None)  # type: ignore[union-attr]


def contrast(details: SweepDetails, factor: str, name_a: str, a: TrialRun, name_b: str, b: TrialRun,
             metric: str) -> Comparison:
    """A vs B on their common validation commits (paired bootstrap) and over their repeats (Welch)."""
    pa, pb = details.predictions.get(a.run_id), details.predictions.get(b.run_id)
    difference = paired(pa, pb, metric) if pa is not None and pb is not None and set(pa.rows) == set(pb.rows) \
        else None
    values_a = [value for _, value in repeats_of(details, a, metric)]
    values_b = [value for _, value in repeats_of(details, b, metric)]
    repeats = compare_repeats(values_a, values_b) if len(values_a) >= 2 and len(values_b) >= 2 else None
    return Comparison(factor, name_a, name_b, a, b, difference, repeats, resolved(difference, repeats))


def factor_effects(details: SweepDetails, metric: str) -> list[Factor]:
    """Every searched key with at least two levels among the completed trials, in spec order."""
    factors = []
    for key in searched_keys(details):
        levels = best_per(details, level_of(details, key))
        if len(levels) < 2:
            continue
        (top_name, top), rest = levels[0], levels[1:]
        factors.append(Factor(key, levels, [contrast(details, key, top_name, top, name, run, metric)
                                            for name, run in rest]))
    return factors


def level_of(details: SweepDetails, key: str) -> Callable[[TrialRun], str | None]:
    """A trial's level of `key` (None where the key does not apply to it): the value, or its numeric bin."""
    values = {trial.run_id: searched_params(details, trial).get(key) for trial in details.completed()}
    numbers = {run: number for run, value in values.items() if (number := as_number(value)) is not None}
    distribution = details.spec.search.get(key) if details.spec is not None else None
    categorical = (distribution is not None and distribution.choice is not None) or len(set(numbers.values())) <= 3 \
        or len(numbers) < len([value for value in values.values() if value is not None])
    if categorical:
        return lambda trial: values.get(trial.run_id)
    if distribution is not None:
        log = distribution.loguniform is not None or distribution.log
    else:
        log = min(numbers.values()) > 0 and max(numbers.values()) / min(numbers.values()) >= 100
    bins = decade_bins(numbers) if log else tertile_bins(numbers)
    return lambda trial: bins.get(trial.run_id)


def as_number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def decade_bins(numbers: dict[str, float]) -> dict[str, str]:
    """Each run's decade: `1e-4 to 1e-3`."""
    def decade(value: float) -> str:
        low = math.floor(math.log10(value))
        return f"{short_number(10.0 ** low)} to {short_number(10.0 ** (low + 1))}"
    return {run: decade(value) for run, value in numbers.items()}


def tertile_bins(numbers: dict[str, float]) -> dict[str, str]:
    """Each run's tertile of the values tried, named by the range of values in it: `0.1 to 0.25`."""
    edges = np.quantile(list(numbers.values()), np.linspace(0, 1, TERTILES + 1)[1:-1])
    index = {run: int(np.searchsorted(edges, value, side="right")) for run, value in numbers.items()}
    ranges = {i: [v for run, v in numbers.items() if index[run] == i] for i in set(index.values())}
    names = {i: f"{short_number(min(vs))} to {short_number(max(vs))}" for i, vs in ranges.items()}
    return {run: names[i] for run, i in index.items()}
