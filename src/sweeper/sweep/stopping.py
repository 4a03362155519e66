"""Is the sweep settled? The check after each ended trial, and `sweep.stop: {when: decided}` acting on it.

Two conditions, both needed:

(a) Optuna's Terminator rule (Makarova et al. 2022): the improvement still possible is below the error of the
    evaluation. The improvement is Optuna's `RegretBoundEvaluator`: a Gaussian process over the completed trials bounds
    how far the best value found is from the best in the search space, in the metric's own units, so it compares with
    an error in those units. (`BestValueStagnationEvaluator` counts trials since the best improved: a number of trials,
    not a size, that says nothing about whether a better value would be a real one.) The error is the custom
    `BootstrapErrorEvaluator`: the standard error of the best trial's validation metric from its own bootstrap interval
    (the 95 % interval every trial logs, `metrics.bootstrap`), not Optuna's cross-validation spread (sweeps here
    train once per configuration).
(b) The verdict (`report.verdict`: beats the baselines or not, the factors that matter, the cheapest configuration
    within noise) stayed the same over the last `patience` ended trials.

Only (b) reads MLflow (the runs' predictions, each completed run's file downloaded once per sweep session), and only
with `when: decided`: `when: never` logs the bound and the error alone. Once decided, the searcher suggests no new
trial (Ray Tune's `Searcher.FINISHED`), running trials finish, and the parent run carries `sweeper.stopped` (a resumed
decided sweep reads it and starts nothing). The Terminator's own `should_terminate` returns a bare yes/no; the check
calls its two evaluators directly to log both figures, and applies the same rule (improvement < error).
"""

from __future__ import annotations

import json
import math
import warnings
from typing import Any, Protocol

import optuna
from optuna.study import StudyDirection
from optuna.terminator import BaseErrorEvaluator, RegretBoundEvaluator
from optuna.trial import FrozenTrial, TrialState
from ray.tune import Callback
from scipy.stats import norm

from sweeper.predictions import Predictions
from sweeper.report.budget import Stopped, stop_note, stopped_of
from sweeper.report.verdict import Verdict, verdict
from sweeper.tracking.client import Tracker
from sweeper.tracking.schema import (BUDGET_TRIALS, CI_HIGH, CI_LOW, INTERVAL_ATTR, STOP_BOUND, STOP_ERROR,
                                     STOP_UNCHANGED, Tag)
from sweeper.recorded.sweeps import SweepDetails, SweepRecord, load_sweep, searched_params

Answers = tuple[Any, ...]


def record_interval(trial: optuna.Trial, result: dict[str, Any] | None, metric: str) -> None:
    """Keep a completing trial's bootstrap interval of `metric` (from its final result) in the study, where the error
    evaluator reads it; nothing when the trial logged none."""
    low, high = (result or {}).get(metric + CI_LOW), (result or {}).get(metric + CI_HIGH)
    if isinstance(low, (int, float)) and isinstance(high, (int, float)) and math.isfinite(low) and math.isfinite(high):
        trial.set_user_attr(INTERVAL_ATTR, [float(low), float(high)])


def standard_error(low: float, high: float, confidence: float = 0.95) -> float:
    """The standard error a two-sided `confidence` interval implies under a normal approximation: its width over
    2 z. (The intervals are BCa, so they may be lopsided; the width still measures the spread.)

        >>> round(standard_error(0.70, 0.90), 4)
        0.051
    """
    return (high - low) / (2 * float(norm.ppf(0.5 + confidence / 2)))


class BootstrapErrorEvaluator(BaseErrorEvaluator):
    """The error of the evaluation: the bootstrap standard error of the best completed trial's metric; NaN when that
    trial recorded no interval (then the sweep is never decided on it)."""

    def evaluate(self, trials: list[FrozenTrial], study_direction: StudyDirection) -> float:
        complete = [trial for trial in trials if trial.state == TrialState.COMPLETE and trial.value is not None]
        if not complete:
            return math.nan
        sign = 1.0 if study_direction == StudyDirection.MAXIMIZE else -1.0
        best = max(complete, key=lambda trial: sign * float(trial.value))  # type: ignore[arg-type]
        interval = best.user_attrs.get(INTERVAL_ATTR)
        return standard_error(*interval) if interval else math.nan


def improvement_bound(study: optuna.Study, seed: int) -> float:
    """Optuna's regret bound over the study's completed trials; NaN where it cannot be computed (fewer than two
    completed trials, or no searched key common to every trial)."""
    trials = study.get_trials(deepcopy=False)
    if sum(1 for trial in trials if trial.state == TrialState.COMPLETE) < 2:
        return math.nan
    with warnings.catch_warnings():
        # RegretBoundEvaluator warns at each construction that it is experimental (ExperimentalWarning, since Optuna
        # 3.2): a line in the sweep's output after every trial that tells the user nothing. The module is deprecated
        # since Optuna 4.9 (removal planned for 6.0), though this class does not warn of it.
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        try:
            return float(RegretBoundEvaluator(seed=seed).evaluate(trials, study.direction))
        except ValueError:
            return math.nan


def untried(spec: Any, study: optuna.Study) -> list[str]:
    """The levels of each unconditional `choice` in the search space that no completed or pruned trial has had
    (`lr 0.01`): the verdict cannot say a factor does not matter while one of its levels is untried, and a Gaussian
    process over a few trials is as sure of an unseen level as of the ones it saw. A pruned trial counts: the pruner
    judged its level worse than the others at the same step, and would prune the level's later trials too (a level
    that is always pruned must not keep the sweep from ever deciding); a failed or running trial does not."""
    ended = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    missing = []
    for key, distribution in spec.search.items():
        if distribution.choice is None or distribution.when:
            continue
        tried = {repr(trial.params.get(key)) for trial in ended}
        missing += [f"{key} {value}" for value in distribution.choice if repr(value) not in tried]
    return missing


def answers(found: Verdict, details: SweepDetails) -> Answers:
    """The verdict's answers, without its figures: beats the baselines (or is beaten by them, or neither), each factor
    that matters with its better level, and the cheapest configuration within noise, as its cost (two significant
    digits) and its values of the factors that matter: by the verdict's own reasoning its other values are
    interchangeable, so a new trial that only swaps them does not change the answer."""
    sides = {comparison.side for comparison in found.baselines}
    beats = None if not sides else "beats" if 1 in sides else "beaten" if sides == {-1} else "unresolved"
    factors = []
    for factor in found.factors:
        strongest = factor.strongest()
        if strongest is not None:
            factors.append((factor.key, strongest.name_a if strongest.side > 0 else strongest.name_b))
    chosen: tuple[Any, ...] = ()
    if found.chosen is not None:
        values = searched_params(details, found.chosen.a)
        chosen = (f"{found.chosen.a.metrics.get(found.cost, math.nan):.2g}",
                  *sorted((key, values.get(key)) for key, _ in factors))
    return beats, tuple(sorted(factors)), chosen


class StopCheck:
    """The check of one sweep session: counts ended trials (from `ended`, those of earlier sessions), logs the figures
    after each, and says when the sweep is decided."""

    def __init__(self, spec: Any, tracker: Tracker, sweep: SweepRecord, study: optuna.Study, ended: int = 0) -> None:
        self.spec = spec
        self.settings = spec.sweep.stop
        self.budget = spec.sweep.trials
        self.seed = spec.sweep.seed
        self.tracker, self.sweep, self.study = tracker, sweep, study
        self.ended = ended
        self.answers: Answers | None = None
        self.unchanged = 0
        self.predictions: dict[str, Predictions | None] = {}  # by run id: each completed run's file read once
        parent = tracker.client.get_run(sweep.run_id)
        self.stopped = stopped_of(parent.data.tags)
        self.active = len(study.directions) == 1  # a multi-objective study has no single best value to bound
        if not self.stopped and ended and self.settings.when == "decided":  # resumed: go on from where it stood
            history = tracker.client.get_metric_history(sweep.run_id, STOP_UNCHANGED)
            self.unchanged = int(max(history, key=lambda m: m.step).value) if history else 0
            self.answers = self.current_answers()
        tracker.log_metrics(sweep.run_id, {BUDGET_TRIALS: self.budget})

    def current_answers(self) -> Answers:
        details = load_sweep(self.tracker, self.sweep, curves=False, known=self.predictions)
        return answers(verdict(details), details)

    def after_trial(self) -> Stopped | None:
        """One more trial ended: log the bound and the error (and, when deciding, the verdict's stability); the
        decision when this trial settles the sweep, else None."""
        self.ended += 1
        if not self.active:
            return None
        bound = improvement_bound(self.study, self.seed)
        error = BootstrapErrorEvaluator().evaluate(self.study.get_trials(deepcopy=False), self.study.direction)
        metrics = {STOP_BOUND: bound, STOP_ERROR: error}
        if self.settings.when == "decided" and not self.stopped:
            now = self.current_answers()
            self.unchanged = self.unchanged + 1 if now == self.answers else 0
            self.answers = now
            metrics[STOP_UNCHANGED] = self.unchanged
        self.tracker.log_metrics(self.sweep.run_id, {k: v for k, v in metrics.items() if not math.isnan(v)},
                                 step=self.ended)
        if self.settings.when != "decided" or self.stopped or not self.settled(bound, error):
            return None
        self.stopped = Stopped(
            f"decided after {self.ended} of {self.budget} trials: the improvement still possible "
            f"({bound:.4f} {self.sweep.metric}, Optuna's regret bound) is below the best trial's bootstrap standard "
            f"error ({error:.4f}), every searched choice was tried, and the verdict stayed the same over the last "
            f"{self.unchanged} ended trials",
            self.ended, bound, error)
        self.tracker.set_tags(self.sweep.run_id, {Tag.STOPPED: json.dumps(self.stopped.as_dict())})
        return self.stopped

    def settled(self, bound: float, error: float) -> bool:
        """Both conditions, after `min_trials`, once every level of each searched choice was tried, and before the
        budget is spent anyway (no stop at the last trial)."""
        return (self.settings.min_trials <= self.ended < self.budget and self.unchanged >= self.settings.patience
                and bound < error and not untried(self.spec, self.study))  # False when bound or error is NaN

    def note(self, verdict_text: str | None) -> str | None:
        """The parent run's verdict line with the reason the sweep stopped, if it did."""
        return stop_note(verdict_text, self.stopped)


class Finishing(Protocol):
    def finish(self) -> None: ...


class Flushing(Protocol):
    def flush(self) -> None: ...


class StopCallback(Callback):
    """Runs the check after each ended trial (once its run is complete in MLflow) and tells the searcher to start no
    new trial when the sweep is decided."""

    def __init__(self, check: StopCheck, tracking: Flushing, searcher: Finishing) -> None:
        self.check, self.tracking, self.searcher = check, tracking, searcher

    def __getstate__(self) -> dict[str, Any]:
        """Ray pickles the Tuner's settings for its own records; the check's clients stay behind."""
        return {}

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.ended()

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.ended()

    def ended(self) -> None:
        self.tracking.flush()  # the trial's metrics and predictions are in MLflow before the verdict reads them
        if self.check.after_trial() is not None:
            print(f"sweep stops: {self.check.stopped.reason}; running trials finish", flush=True)  # type: ignore
            self.searcher.finish()
