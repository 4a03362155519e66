"""Comparing a sweep's trials: the best per group, metric-vs-cost Pareto fronts, totals and what pruning saved; and
the decision between methods (and baselines) with paired bootstrap intervals and repeats over seeds."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from sweeper.direction import Direction
from sweeper.metrics.bootstrap import (CLASSIFICATION_METRICS, TEXT_METRICS, Difference, RepeatComparison,
                                       classification_difference, compare_repeats, paired_difference, text_statistic)
from sweeper.tracking.schema import Role, State
from sweeper.predictions import Predictions
from sweeper.report.wording import DISPLAY, decision
from sweeper.recorded.sweeps import SweepDetails, TrialRun, best_per_method, ranked

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
    direction = Direction(mode)
    points.sort(key=lambda t: (t.metrics[cost], -direction.score(t.value(metric) or 0.0)))
    front: list[TrialRun] = []
    for trial in points:
        if not front or direction.better(trial.value(metric) or 0.0, than=front[-1].value(metric) or 0.0):
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


# --- the decision: paired differences between the methods' best trials, the baselines, the repeats ---------

RESAMPLES = 1000  # of the validation commits, for every paired interval (seeded: the same report twice)


@dataclass(frozen=True)
class Pair:
    """Two contenders compared: the paired difference A - B on the same commits (None when it cannot be computed:
    the sentence says why), Welch's test over their repeats (None without two repeats a side), and the sentence."""

    a: str
    b: str
    difference: Difference | None
    repeats: RepeatComparison | None
    sentence: str


@dataclass(frozen=True)
class Decision:
    """The pairs of the report's Decision section: the metric decided on, the validation set, each pair, each method's
    repeat values, and notes on what is missing. (What they come to is the verdict's: `sweeper.report.verdict`.)"""

    metric: str
    commits: int
    positives: int | None  # defective validation commits (JIT-DP)
    pairs: list[Pair]
    repeats: dict[str, list[float]]  # method -> the values of the metric of its best trial's repeats, by seed
    notes: list[str]


def decision_metric(details: SweepDetails) -> str:
    """The metric the decision is on: the sweep's when the predictions can give it (AUC, F1, ... for JIT-DP;
    BLEU, ROUGE-L, ... for CMG), else AUC (JIT-DP) or BLEU (CMG; a sweep ranked by `eval_loss`)."""
    metric = details.record.metric
    if details.task == "cmg":
        return metric if metric in TEXT_METRICS else "bleu"
    return metric if metric in CLASSIFICATION_METRICS else "auc"


def label(run: TrialRun) -> str:
    """How the decision names a contender: the method, or the baseline's name marked as one."""
    return f"{run.method} (baseline)" if run.role == Role.BASELINE else run.method


def decide(details: SweepDetails) -> Decision:
    """Every pair of the methods' best trials, and each against the best baseline, on the same validation commits."""
    metric = decision_metric(details)
    notes: list[str] = []
    best = best_per_method(details.completed())  # the best configurations by the sweep's metric, as repeated
    baselines = ranked(details.baselines, metric, "max")
    contenders = best + baselines[:1]
    missing = [run for run in contenders if run.run_id not in details.predictions]
    if missing:
        notes.append("No paired interval for " + ", ".join(f"{label(run)} (`{run.run_id}`)" for run in missing)
                     + ": the run logged no predictions.csv (an older run?).")
    notes += uncompared_methods(details, {run.method for run in best})
    repeats = repeat_values(details, metric, best)
    pairs = [compare(details, a, b, metric, repeats) for i, a in enumerate(best) for b in best[i + 1:]]
    pairs += [compare(details, trial, baselines[0], metric, repeats) for trial in best] if baselines else []
    if not details.baselines:
        notes.append("No baselines in this sweep (a CMG sweep, a sweep from before baselines, or one with "
                     "`baselines: []`).")
    if not details.repeats:
        notes.append("No repeats: set `sweep.repeats: N` to train each method's best configuration again with N "
                     "more seeds.")
    elif any(len(values) < 2 for values in repeats.values()):
        notes.append("Fewer than two repeats of a method: no spread over seeds to test (Welch's test needs two "
                     "a side); set `sweep.repeats: 3` or more.")
    if len(contenders) < 2:
        notes.append("Nothing to compare: fewer than two methods with a completed trial, and no baseline.")
    first = next((details.predictions[run.run_id] for run in contenders if run.run_id in details.predictions), None)
    commits = len(first.rows) if first else 0
    positives = sum(row[0] == "1" for row in first.rows.values()) if first and first.task == "jitdp" else None
    return Decision(metric, commits, positives, pairs, repeats, notes)


def uncompared_methods(details: SweepDetails, compared: set[str]) -> list[str]:
    """A note for each method the sweep tried that has no completed trial to compare, with how its trials ended:
    silence would read as if the method had not been tried."""
    notes = []
    for method in sorted({trial.method for trial in details.trials} - compared):
        ended: dict[str, int] = defaultdict(int)
        for trial in details.trials:
            if trial.method == method:
                ended[trial.state] += 1
        how = ", ".join(f"{count} {state}" for state, count in sorted(ended.items()))
        notes.append(f"{method}: no completed trial ({how}), so it is not compared. With trials pruned, more trials "
                     "or a gentler pruner (`startup_trials`, `warmup_steps`) give it a completed one.")
    return notes


def compare(details: SweepDetails, a: TrialRun, b: TrialRun, metric: str, repeats: dict[str, list[float]]) -> Pair:
    """A vs B: the paired bootstrap difference on their common validation commits, and Welch over their repeats."""
    over_seeds = None
    values_a, values_b = repeats.get(a.method, []), repeats.get(b.method, [])
    if a.role == b.role == Role.TRIAL and len(values_a) >= 2 and len(values_b) >= 2:
        over_seeds = compare_repeats(values_a, values_b)
    pa, pb = details.predictions.get(a.run_id), details.predictions.get(b.run_id)
    if pa is None or pb is None:
        return Pair(label(a), label(b), None, over_seeds, f"{label(a)} vs {label(b)}: no predictions to pair")
    if set(pa.rows) != set(pb.rows):
        return Pair(label(a), label(b), None, over_seeds, f"{label(a)} vs {label(b)}: not paired, the runs were "
                    f"scored on different validation commits ({len(pa.rows)} and {len(pb.rows)})")
    difference = paired(pa, pb, metric)
    sentence = decision(label(a), label(b), metric, difference, over_seeds)
    return Pair(label(a), label(b), difference, over_seeds, sentence)


def paired(a: Predictions, b: Predictions, metric: str) -> Difference:
    """metric(A) - metric(B) on the same commits (A's order) with a paired bootstrap interval."""
    ids = list(a.rows)
    if a.task == "jitdp":
        labels = [int(a.rows[i][0]) for i in ids]
        return classification_difference(labels, [float(a.rows[i][1]) for i in ids], [float(b.rows[i][1]) for i in ids],
                                         metric, resamples=RESAMPLES)
    references = [a.rows[i][0] for i in ids]
    return paired_difference(text_statistic(references, [a.rows[i][1] for i in ids], [metric]),
                             text_statistic(references, [b.rows[i][1] for i in ids], [metric]), len(ids),
                             resamples=RESAMPLES, vectorized=True)


def repeat_values(details: SweepDetails, metric: str, best: list[TrialRun]) -> dict[str, list[float]]:
    """The values of `metric` of the completed repeats of each method's best trial, in seed order."""
    return {trial.method: [value for _, value in repeats_of(details, trial, metric)] for trial in best
            if repeats_of(details, trial, metric)}


def repeats_of(details: SweepDetails, trial: TrialRun, metric: str) -> list[tuple[int, float]]:
    """(seed, value of `metric`) of each completed repeat of `trial`, in seed order."""
    found = [(int(run.params.get("seed", -1)), run.value(metric)) for run in details.repeats
             if run.repeat_of == trial.run_id and run.state == State.COMPLETE]
    return sorted((seed, value) for seed, value in found if value is not None)


def value_text(run: TrialRun, metric: str, named: bool = True) -> str:
    """`AUC 0.712 [0.531, 0.830]`: the run's value (named, unless not `named`) and, where it logged one, its
    bootstrap interval."""
    value = run.value(metric)
    interval = run.interval(metric)
    text = ("-" if value is None else f"{value:.3f}") + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")
    return f"{DISPLAY.get(metric, metric)} {text}" if named else text


def spread(values: list[float]) -> tuple[float, float, tuple[float, float]]:
    """Mean, standard deviation and t interval of the mean of one method's repeats (NaN where one value)."""
    one_side = compare_repeats(values, values)  # the "A" side holds one sample's statistics
    return one_side.mean_a, one_side.sd_a, one_side.ci_a


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
