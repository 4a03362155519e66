"""Comparing a sweep's trials: the best per group, metric-vs-cost Pareto fronts, totals and what pruning saved."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from sweeper.tracking.schema import COSTS, State
from sweeper.tracking.sweeps import SweepDetails, TrialRun

FRONT_COSTS = ("trainable_params", "train_seconds")  # the costs every report draws a Pareto front on
TRAIN_FRACTION = "data.train_fraction"  # the trial key of low-resource sweeps (`DataConfig.train_fraction`)


def best_per(details: SweepDetails, key: Callable[[TrialRun], str | None]) -> list[tuple[str, TrialRun]]:
    """(group, best completed trial) for each group `key` gives (None: not in any group), best group first."""
    best: dict[str, TrialRun] = {}
    for trial in details.completed():  # best first, so the first seen of a group is its best
        group = key(trial)
        if group is not None:
            best.setdefault(group, trial)
    return list(best.items())


def backbone_params(details: SweepDetails) -> float | None:
    """The backbone's size, as trials measured it before their method changed it (`backbone_params`); for runs
    that did not log it, the smallest total any trial held (every method adds to the backbone or keeps it)."""
    measured = [t.metrics["backbone_params"] for t in details.trials if "backbone_params" in t.metrics]
    if measured:
        return measured[0]
    return min((t.metrics["total_params"] for t in details.trials if "total_params" in t.metrics), default=None)


def pareto_front(trials: list[TrialRun], metric: str, mode: str, cost: str) -> list[TrialRun]:
    """Completed trials no other trial beats on both the metric and `cost` (lower is better), cheapest first."""
    points = [t for t in trials if t.value(metric) is not None and cost in t.metrics]
    sign = 1.0 if mode == "max" else -1.0
    points.sort(key=lambda t: (t.metrics[cost], -sign * (t.value(metric) or 0.0)))
    front: list[TrialRun] = []
    for trial in points:
        if not front or sign * (trial.value(metric) or 0.0) > sign * (front[-1].value(metric) or 0.0):
            front.append(trial)
    return front


@dataclass(frozen=True)
class Totals:
    """What a sweep ran and spent."""

    counts: dict[str, int]
    compute: dict[str, float]  # unit ('CPU-h' / 'GPU-h') -> hours spent
    saved: dict[str, float]  # unit -> hours pruning saved (estimated)
    epochs_saved: float


def sweep_totals(details: SweepDetails) -> Totals:
    """Trial counts by state, compute spent, and compute saved by pruning.

    A pruned trial saved the epochs it did not run times the mean seconds per epoch of the trials
    of its method (each trial's compute seconds over its epochs).
    """
    counts = {state: sum(1 for t in details.trials if t.state == state) for state in State.ENDED}
    compute: dict[str, float] = defaultdict(float)
    for trial in details.trials:
        hours, unit = trial.compute_hours
        compute[unit] += hours
    per_epoch: dict[str, list[float]] = defaultdict(list)
    for trial in details.trials:
        if trial.epochs_done > 0 and trial.compute_seconds > 0:
            per_epoch[trial.method].append(trial.compute_seconds / trial.epochs_done)
    saved: dict[str, float] = defaultdict(float)
    epochs_saved = 0.0
    for trial in details.trials:
        if trial.state != State.PRUNED or not per_epoch[trial.method]:
            continue
        left = max(float(trial.params.get("epochs", trial.epochs_done)) - trial.epochs_done, 0.0)
        seconds = left * sum(per_epoch[trial.method]) / len(per_epoch[trial.method])
        _, unit = trial.compute_hours
        devices = trial.gpus if unit == "GPU-h" else trial.cpus
        saved[unit] += seconds * devices / 3600
        epochs_saved += left
    return Totals(counts, dict(compute), dict(saved), epochs_saved)


@dataclass(frozen=True)
class FractionBest:
    """The best completed trial of one method at one training fraction, and how many trials ran there."""

    method: str
    fraction: float
    best: TrialRun
    trials: int


def best_per_fraction(details: SweepDetails) -> list[FractionBest]:
    """The best trial per (method, training fraction), by method then fraction; empty unless the completed trials
    trained on more than one fraction (a low-resource sweep)."""
    groups: dict[tuple[str, float], list[TrialRun]] = defaultdict(list)
    for trial in details.completed():  # best first
        groups[(trial.method, train_fraction(trial))].append(trial)
    if len({fraction for _, fraction in groups}) < 2:
        return []
    return [FractionBest(method, fraction, trials[0], len(trials))
            for (method, fraction), trials in sorted(groups.items())]


def train_fraction(trial: TrialRun) -> float:
    """The share of the training split the trial trained on (1.0 for runs from before the key existed)."""
    return float(trial.params.get(TRAIN_FRACTION, 1.0))
