"""How a sweep went, read back when it ends: its trials by state, compute, baselines, repeats and its best run (for a
multi-objective study, the Pareto trial best on the primary metric), from MLflow and the Optuna study.

The driver summarises a sweep with `summarise`, logs it on the parent run with `log_summary` and prints it (or its
`as_dict`, `sweeper run --json`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import optuna

from sweeper.direction import Direction, Objectives
from sweeper.recorded.objectives import study_objectives
from sweeper.spec import format_objectives
from sweeper.tracking.client import Tracker
from sweeper.tracking.schema import (BEST_PREFIX, BEST_VALUE, COMPUTE_SECONDS, PARETO_FILE, PARETO_TRIALS,
                                     TRIALS_PREFIX, Role, State, Tag)


@dataclass
class SweepSummary:
    """How a sweep went: where it is recorded, and its trials by state (all its sessions, resumed ones too)."""

    sweep_id: str
    parent_run_id: str
    experiment: str
    tracking_uri: str
    study_storage: str
    counts: dict[str, int] = field(default_factory=dict)
    best_value: float | None = None
    best_run_id: str | None = None
    baselines: dict[str, float | None] = field(default_factory=dict)  # name -> the metric's validation value
    repeats: dict[str, int] = field(default_factory=dict)  # repeat runs by state
    verdict: str | None = None  # sweeper.report.verdict's sentences, once the sweep completed
    compute_seconds: float = 0.0  # the trials' training and evaluation time
    objectives: Objectives = field(default_factory=list)  # a multi-objective study's
    pareto: list[dict[str, Any]] = field(default_factory=list)  # its Pareto set: number, run_id, values per trial
    stopped: dict[str, Any] | None = None  # why it stopped before its budget: reason, trials, bound, error

    def count(self, state: str) -> int:
        return self.counts.get(state, 0)

    def as_dict(self) -> dict[str, Any]:
        """`sweeper run --json`'s output."""
        return {"sweep_id": self.sweep_id, "parent_run_id": self.parent_run_id, "experiment": self.experiment,
                "tracking_uri": self.tracking_uri, "best_value": self.best_value, "best_run_id": self.best_run_id,
                "trials": {state: self.count(state) for state in State.ENDED}, "baselines": self.baselines,
                "repeats": self.repeats, "verdict": self.verdict, "stopped": self.stopped}


def summarise(tracker: Tracker, summary: SweepSummary, study: optuna.Study, metric: str) -> SweepSummary:
    """Counts by state, compute and the best run, from MLflow and the study; the baselines' values of `metric` and
    the repeats by state too. A multi-objective study has no single best trial: its best run is `pareto_best`'s."""
    experiment_id = tracker.experiment_id(summary.experiment)
    runs = tracker.child_runs(summary.parent_run_id, experiment_id)
    for state in State.ENDED:
        summary.counts[state] = sum(1 for run in runs if run.data.tags.get(Tag.STATE) == state)
    summary.baselines = {run.data.tags.get(Tag.BASELINE, run.info.run_name): run.data.metrics.get(BEST_PREFIX + metric)
                         for run in tracker.child_runs(summary.parent_run_id, experiment_id, Role.BASELINE)}
    repeats = [run.data.tags.get(Tag.STATE) for run in
               tracker.child_runs(summary.parent_run_id, experiment_id, Role.REPEAT)]
    summary.repeats = {state: repeats.count(state) for state in State.ENDED if state in repeats}
    summary.compute_seconds = sum(run.data.metrics.get(COMPUTE_SECONDS, 0.0) for run in runs)
    summary.objectives = study_objectives(study)
    if not any(trial.state == optuna.trial.TrialState.COMPLETE for trial in study.trials):
        return summary
    run_of = {run.data.tags.get(Tag.OPTUNA_TRIAL): run.info.run_id for run in runs}
    if summary.objectives:
        pareto = sorted(study.best_trials, key=lambda trial: trial.number)
        best = pareto_best(pareto, summary.objectives)
        summary.best_value = float(best.values[0])
        summary.pareto = [{"number": trial.number, "run_id": run_of.get(str(trial.number)),
                           "values": dict(zip((name for name, _ in summary.objectives), trial.values))}
                          for trial in pareto]
    else:
        best = study.best_trial
        summary.best_value = float(best.value)
    summary.best_run_id = run_of.get(str(best.number))
    return summary


def pareto_best(pareto: list[optuna.trial.FrozenTrial], objectives: Objectives) -> optuna.trial.FrozenTrial:
    """The trial of a Pareto set best on the primary metric (the first objective)."""
    return Direction(objectives[0][1]).best(pareto, key=lambda trial: trial.values[0])


def log_summary(tracker: Tracker, summary: SweepSummary) -> None:
    """The summary on the parent run: counts by state, compute, the best value and run; a multi-objective study's
    objectives as a tag (`sweeper.objectives`) and its Pareto set as `pareto.json`."""
    metrics = {TRIALS_PREFIX + state: float(count) for state, count in summary.counts.items()}
    metrics[COMPUTE_SECONDS] = summary.compute_seconds
    if summary.objectives:
        tracker.set_tags(summary.parent_run_id, {Tag.OBJECTIVES: format_objectives(summary.objectives)})
    if summary.best_value is not None:
        metrics[BEST_VALUE] = summary.best_value
    if summary.pareto:
        metrics[PARETO_TRIALS] = float(len(summary.pareto))
        tracker.client.log_dict(summary.parent_run_id, {
            "objectives": [{"metric": metric, "mode": mode} for metric, mode in summary.objectives],
            "trials": summary.pareto}, PARETO_FILE)
    if summary.best_run_id:
        tracker.set_tags(summary.parent_run_id, {Tag.BEST_RUN: summary.best_run_id})
    tracker.log_metrics(summary.parent_run_id, metrics)
