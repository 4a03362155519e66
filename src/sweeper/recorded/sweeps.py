"""A recorded sweep read back from MLflow: its parent run, its spec and its trials, ranked by the sweep's metric.

Baselines and repeats are child runs too, read apart from the trials (`trial_runs(..., role=Role.BASELINE)`), so
counts and rankings of trials never include them. `sweeper best` ranks `trial_runs`; `sweeper report` reads
everything with `load_sweep` (learning curves, artifact sizes and the validation predictions of the runs it
compares too, which cost a few requests per run).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sweeper.config import parse_scalar
from sweeper.direction import Direction, Mode
from sweeper.errors import SweeperError
from sweeper.predictions import Predictions, read_predictions
from sweeper.spec import Spec, parse_spec
from sweeper.tracking.client import Tracker
from sweeper.tracking.schema import (BEST_PREFIX, CI_HIGH, CI_LOW, COMPUTE_SECONDS, EPOCH, PREDICTIONS_FILE, SPEC_FILE,
                                     TRIALS_PREFIX, Role, State, Tag)


@dataclass(frozen=True)
class SweepRecord:
    """A sweep's parent run and what it ranks by."""

    sweep_id: str
    run_id: str
    experiment_id: str
    metric: str
    mode: Mode


@dataclass(frozen=True)
class TrialRun:
    """One trial of a sweep, of any state, as its MLflow run recorded it; or one of its baselines (`role`
    baseline, `method` the baseline's name) or repeats (`role` repeat, `repeat_of` the repeated trial's run id,
    `number` its Optuna number).

    `curve` and `artifact_bytes` are read only for a report (`load_sweep`); `gpus` and `cpus` are what each trial
    had (the spec's `sweep.resources`).
    """

    run_id: str
    name: str
    number: int  # the Optuna trial's number; -1 when unknown
    method: str
    state: str
    params: dict[str, str]
    metrics: dict[str, float]
    curve: list[tuple[float, float]] = field(default_factory=list)  # (epoch, metric) per evaluation
    artifact_bytes: int = 0
    gpus: float = 0.0
    cpus: float = 1.0
    role: str = Role.TRIAL
    repeat_of: str = ""

    def value(self, metric: str) -> float | None:
        """The trial's best value of `metric` (completed trials), else None."""
        value = self.metrics.get(BEST_PREFIX + metric)
        return None if value is None or math.isnan(value) else value

    def interval(self, metric: str) -> tuple[float, float] | None:
        """The bootstrap 95 % interval of `metric` over the validation commits, where the run logged one."""
        low, high = self.metrics.get(metric + CI_LOW), self.metrics.get(metric + CI_HIGH)
        if low is None or high is None or math.isnan(low) or math.isnan(high):
            return None
        return low, high

    @property
    def compute_seconds(self) -> float:
        """Training and evaluation seconds the trial used (up to where it stopped)."""
        return self.metrics.get(COMPUTE_SECONDS, 0.0)

    @property
    def compute_hours(self) -> tuple[float, str]:
        """(hours x devices, 'GPU-h' or 'CPU-h'): GPU-hours when the trial had a GPU share."""
        if self.gpus > 0:
            return self.compute_seconds * self.gpus / 3600, "GPU-h"
        return self.compute_seconds * self.cpus / 3600, "CPU-h"

    @property
    def epochs_done(self) -> float:
        """Epochs trained, from the last evaluation."""
        return self.curve[-1][0] if self.curve else self.metrics.get(EPOCH, 0.0)

    def as_dict(self, metric: str) -> dict[str, Any]:
        """`sweeper best --json`'s row; `role` says whether it is a trial or a baseline."""
        return {"run_id": self.run_id, "name": self.name, "method": self.method, "role": self.role,
                metric: self.value(metric), "metrics": self.metrics, "params": self.params}


@dataclass(frozen=True)
class SweepDetails:
    """A sweep with its parent run's tags and metrics, its spec and every trial."""

    record: SweepRecord
    experiment: str
    tags: dict[str, str]
    metrics: dict[str, float]
    spec: Spec | None  # None when the logged spec no longer validates
    trials: list[TrialRun]
    baselines: list[TrialRun] = field(default_factory=list)
    repeats: list[TrialRun] = field(default_factory=list)
    predictions: dict[str, Predictions] = field(default_factory=dict)  # by run id: the runs a report compares

    def completed(self) -> list[TrialRun]:
        """Completed trials with a value, best first."""
        return ranked(self.trials, self.record.metric, self.record.mode)

    @property
    def task(self) -> str:
        """jitdp or cmg: the spec's, else what the predictions hold, else jitdp."""
        if self.spec is not None:
            return str(self.spec.task)
        return next((predictions.task for predictions in self.predictions.values()), "jitdp")

    def missing(self) -> list[int]:
        """Optuna numbers of trials that have no run in MLflow (deleted by hand): those below the count the parent
        run logged at the sweep's end (one run per Optuna trial, numbered from 0), or below the highest number found
        while no count was logged."""
        found = {trial.number for trial in self.trials if trial.number >= 0}
        counts = [self.metrics[TRIALS_PREFIX + state] for state in State.ENDED if TRIALS_PREFIX + state in self.metrics]
        expected = int(sum(counts)) if counts else max(found, default=-1) + 1
        return [number for number in range(expected) if number not in found]


def find_sweep(tracker: Tracker, sweep_id: str | None = None, experiment: str | None = None) -> SweepRecord:
    """A sweep by id, else the latest one."""
    runs = tracker.sweep_runs(experiment, sweep_id)
    if not runs:
        which = f"sweep '{sweep_id}'" if sweep_id else "any sweep"
        raise SweeperError(f"no {which} in MLflow at {tracker.uri} (pass --tracking-uri or set MLFLOW_TRACKING_URI)")
    run = runs[0]
    tags = run.data.tags
    return SweepRecord(tags[Tag.SWEEP], run.info.run_id, run.info.experiment_id,
                       tags.get(Tag.METRIC, "auc"), Direction(tags.get(Tag.MODE, "max")).value)


def trial_runs(tracker: Tracker, sweep: SweepRecord, spec: Spec | None = None, details: bool = False,
               role: str = Role.TRIAL) -> list[TrialRun]:
    """Every trial of a sweep (or its baselines, or its repeats: `role`), in trial order; with `details`, the
    learning curve and artifact size too."""
    resources = spec.sweep.resources if spec is not None else None
    trials = []
    for run in tracker.child_runs(sweep.run_id, sweep.experiment_id, role):
        tags, params = run.data.tags, dict(run.data.params)
        number = tags.get(Tag.REPEAT_OF_TRIAL if role == Role.REPEAT else Tag.OPTUNA_TRIAL, "")
        method = tags.get(Tag.BASELINE, "?") if role == Role.BASELINE else \
            tags.get(Tag.METHOD, params.get("method", "?"))
        extra: dict[str, Any] = {}
        if details:
            extra = {"curve": metric_curve(tracker, run.info.run_id, sweep.metric),
                     "artifact_bytes": artifact_bytes(tracker, run.info.run_id)}
        trials.append(TrialRun(run.info.run_id, run.info.run_name or run.info.run_id,
                               int(number) if number.isdigit() else -1, method,
                               tags.get(Tag.STATE, "?"), params, dict(run.data.metrics), **extra,
                               gpus=resources.gpu if resources else 0.0, cpus=resources.cpu if resources else 1.0,
                               role=role, repeat_of=tags.get(Tag.REPEAT_OF, "")))
    return sorted(trials, key=lambda trial: (trial.number, trial.name))


def ranked(trials: list[TrialRun], metric: str, mode: str) -> list[TrialRun]:
    """Completed trials with a value of `metric`, best first."""
    done = [trial for trial in trials if trial.state == State.COMPLETE and trial.value(metric) is not None]
    return Direction(mode).best_first(done, key=lambda trial: trial.value(metric) or 0.0)


def best_per_method(trials: list[TrialRun]) -> list[TrialRun]:
    """The first (best) trial of each method of a ranking, in ranking order."""
    seen: dict[str, TrialRun] = {}
    for trial in trials:
        seen.setdefault(trial.method, trial)
    return list(seen.values())


def load_sweep(tracker: Tracker, sweep: SweepRecord, curves: bool = True,
               known: dict[str, Predictions | None] | None = None) -> SweepDetails:
    """Everything `sweeper report` shows, read from MLflow: trials (with `curves`, their learning curves and artifact
    sizes too), baselines, repeats, and the validation predictions of every completed trial and baseline (for paired
    comparisons: the verdict looks for the cheapest configuration within noise of the best among all of them).

    `known`: predictions already read, by run id (None: the run logged none), which this call adds to. A caller that
    loads the same sweep again and again (the stopping check, after each ended trial) passes the same dict, so each
    run's file is downloaded once: only completed runs are read, and a completed run's predictions never change."""
    parent = tracker.client.get_run(sweep.run_id)
    spec = logged_spec(tracker, sweep.run_id)
    experiment = tracker.client.get_experiment(sweep.experiment_id).name
    trials = trial_runs(tracker, sweep, spec, details=curves)
    baselines = trial_runs(tracker, sweep, spec, details=curves, role=Role.BASELINE)
    compared = [*ranked(trials, sweep.metric, sweep.mode), *ranked(baselines, sweep.metric, sweep.mode)]
    known = {} if known is None else known
    for run in compared:
        if run.run_id not in known:
            known[run.run_id] = logged_predictions(tracker, run.run_id)
    predictions = {run.run_id: found for run in compared if (found := known[run.run_id]) is not None}
    return SweepDetails(sweep, experiment, dict(parent.data.tags), dict(parent.data.metrics), spec, trials, baselines,
                        trial_runs(tracker, sweep, spec, role=Role.REPEAT), predictions)


def logged_predictions(tracker: Tracker, run_id: str) -> Predictions | None:
    """A run's logged predictions file, or None when it logged none (older or failed runs)."""
    if PREDICTIONS_FILE not in {item.path for item in tracker.client.list_artifacts(run_id)}:
        return None
    with tempfile.TemporaryDirectory() as folder:
        return read_predictions(Path(tracker.client.download_artifacts(run_id, PREDICTIONS_FILE, folder)))


def logged_spec(tracker: Tracker, run_id: str) -> Spec | None:
    """The sweep's spec from its `spec.yaml` artifact, or None when missing or no longer valid."""
    try:
        with tempfile.TemporaryDirectory() as folder:
            text = Path(tracker.client.download_artifacts(run_id, SPEC_FILE, folder)).read_text(encoding="utf-8")
        return parse_spec(yaml.safe_load(text), SPEC_FILE, text)
    except Exception:  # an old or foreign spec: the report does without it
        return None


def metric_curve(tracker: Tracker, run_id: str, metric: str) -> list[tuple[float, float]]:
    """(epoch, value) of `metric` at each evaluation of a run."""
    epochs = {m.step: m.value for m in tracker.client.get_metric_history(run_id, EPOCH)}
    values = sorted((m.step, m.value) for m in tracker.client.get_metric_history(run_id, metric) if m.step > 0)
    return [(epochs.get(step, float(step)), value) for step, value in values]


def artifact_bytes(tracker: Tracker, run_id: str, path: str | None = None) -> int:
    """The total size of a run's artifact files, listed recursively."""
    total = 0
    for item in tracker.client.list_artifacts(run_id, path):
        total += artifact_bytes(tracker, run_id, item.path) if item.is_dir else int(item.file_size or 0)
    return total


def searched_params(details: SweepDetails, trial: TrialRun) -> dict[str, str]:
    """The trial's values of the searched keys that apply to it (`lora.rank` only in LoRA trials).

    Without the spec: `method`, `lr`, and the keys of the trial's own method section.
    """
    if details.spec is None:
        return {key: value for key, value in trial.params.items()
                if key in ("method", "lr") or key.startswith(f"{trial.method}.")}
    current = {key: parse_scalar(value) for key, value in trial.params.items()}
    return {key: trial.params[key] for key, distribution in details.spec.search.items()
            if key in trial.params and distribution.applies(current)}


def searched_keys(details: SweepDetails) -> list[str]:
    """The searched keys in spec order (without the spec: those any trial has)."""
    if details.spec is not None:
        return list(details.spec.search)
    return sorted({key for trial in details.trials for key in searched_params(details, trial)})
