"""Reading a finished sweep back from MLflow: its trials ranked, and the best trial per method."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sweeper.callbacks import SUMMARY_PREFIX
from sweeper.errors import SweeperError
from sweeper.tracking import STATE_TAG, SWEEP_TAG, Tracker


@dataclass(frozen=True)
class RankedTrial:
    """One completed trial of a sweep, with the value it is ranked by."""

    run_id: str
    name: str
    method: str
    value: float
    metrics: dict[str, float]
    params: dict[str, str]

    def as_dict(self, metric: str) -> dict[str, Any]:
        return {"run_id": self.run_id, "name": self.name, "method": self.method, metric: self.value,
                "metrics": self.metrics, "params": self.params}


@dataclass(frozen=True)
class SweepRecord:
    """A sweep's parent run and what it ranks by."""

    sweep_id: str
    run_id: str
    experiment_id: str
    metric: str
    mode: str


def find_sweep(tracker: Tracker, sweep_id: str | None = None, experiment: str | None = None) -> SweepRecord:
    """A sweep by id, else the latest one."""
    runs = tracker.sweep_runs(experiment, sweep_id)
    if not runs:
        which = f"sweep '{sweep_id}'" if sweep_id else "any sweep"
        raise SweeperError(f"no {which} in MLflow at {tracker.uri} (pass --tracking-uri or set MLFLOW_TRACKING_URI)")
    run = runs[0]
    tags = run.data.tags
    return SweepRecord(tags[SWEEP_TAG], run.info.run_id, run.info.experiment_id,
                       tags.get("sweeper.metric", "auc"), tags.get("sweeper.mode", "max"))


def ranked_trials(tracker: Tracker, sweep: SweepRecord) -> list[RankedTrial]:
    """Completed trials of a sweep, best first."""
    key = SUMMARY_PREFIX + sweep.metric
    ranked = []
    for run in tracker.trial_runs(sweep.run_id, sweep.experiment_id):
        value = run.data.metrics.get(key)
        if run.data.tags.get(STATE_TAG) != "complete" or value is None or math.isnan(value):
            continue
        ranked.append(RankedTrial(run.info.run_id, run.info.run_name, run.data.tags.get("sweeper.method", "?"),
                                  value, dict(run.data.metrics), dict(run.data.params)))
    return sorted(ranked, key=lambda trial: trial.value, reverse=sweep.mode == "max")


def best_per_method(trials: list[RankedTrial]) -> list[RankedTrial]:
    """The first (best) trial of each method, in ranking order."""
    seen: dict[str, RankedTrial] = {}
    for trial in trials:
        seen.setdefault(trial.method, trial)
    return list(seen.values())
