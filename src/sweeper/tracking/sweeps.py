"""Reading a finished sweep back from MLflow: its trials ranked, and the best trial per method."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeper.sweep.callbacks import SUMMARY_PREFIX
from sweeper.errors import SweeperError
from sweeper.tracking.client import STATE_TAG, SWEEP_TAG, Tracker


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


# --- The whole sweep, for `sweeper report`: every trial with its history, costs and artifact size. ---

@dataclass(frozen=True)
class TrialRun:
    """One trial of any state, with what the report needs of it."""

    run_id: str
    name: str
    number: int
    method: str
    state: str
    params: dict[str, str]
    metrics: dict[str, float]
    curve: list[tuple[float, float]]  # (epoch, metric) per evaluation
    artifact_bytes: int
    gpus: float  # per trial, from the run or the spec's sweep.resources
    cpus: float

    def value(self, metric: str) -> float | None:
        """The trial's best value of `metric` (completed trials), else None."""
        value = self.metrics.get(SUMMARY_PREFIX + metric)
        return None if value is None or math.isnan(value) else value

    @property
    def compute_seconds(self) -> float:
        """Training and evaluation seconds the trial used (up to where it stopped)."""
        return self.metrics.get("compute_seconds", 0.0)

    @property
    def compute_hours(self) -> tuple[float, str]:
        """(hours x devices, 'GPU-h' or 'CPU-h'): GPU-hours when the trial had a GPU share."""
        if self.gpus > 0:
            return self.compute_seconds * self.gpus / 3600, "GPU-h"
        return self.compute_seconds * self.cpus / 3600, "CPU-h"

    @property
    def epochs_done(self) -> float:
        """Epochs trained, from the last evaluation."""
        return self.curve[-1][0] if self.curve else self.metrics.get("epoch", 0.0)


@dataclass(frozen=True)
class SweepDetails:
    """A sweep with its parent run's tags and metrics, its spec and every trial."""

    record: SweepRecord
    experiment: str
    tags: dict[str, str]
    metrics: dict[str, float]
    spec: Any  # sweeper.spec.Spec, or None when the logged spec no longer validates
    trials: list[TrialRun]

    def completed(self) -> list[TrialRun]:
        """Completed trials with a value, best first."""
        done = [trial for trial in self.trials if trial.state == "complete" and trial.value(self.record.metric) is not None]
        return sorted(done, key=lambda t: t.value(self.record.metric) or 0.0, reverse=self.record.mode == "max")


def load_sweep(tracker: Tracker, sweep: SweepRecord) -> SweepDetails:
    """Everything `sweeper report` shows, read from MLflow."""
    parent = tracker.client.get_run(sweep.run_id)
    spec = logged_spec(tracker, sweep.run_id)
    trials = [trial_run(tracker, run, sweep.metric, spec) for run in tracker.trial_runs(sweep.run_id, sweep.experiment_id)]
    experiment = tracker.client.get_experiment(sweep.experiment_id).name
    return SweepDetails(sweep, experiment, dict(parent.data.tags), dict(parent.data.metrics), spec,
                        sorted(trials, key=lambda trial: trial.number))


def logged_spec(tracker: Tracker, run_id: str) -> Any:
    """The sweep's spec from its `spec.yaml` artifact, or None when missing or no longer valid."""
    import tempfile

    import yaml

    from sweeper.spec import parse_spec

    try:
        with tempfile.TemporaryDirectory() as folder:
            text = Path(tracker.client.download_artifacts(run_id, "spec.yaml", folder)).read_text(encoding="utf-8")
        return parse_spec(yaml.safe_load(text), "spec.yaml", text)
    except Exception:  # an old or foreign spec: the report does without it
        return None


def trial_run(tracker: Tracker, run: Any, metric: str, spec: Any) -> TrialRun:
    """A child run as a TrialRun: its metric curve by epoch, its artifact size and resources."""
    tags, params = run.data.tags, dict(run.data.params)
    run_id = run.info.run_id
    epochs = {m.step: m.value for m in tracker.client.get_metric_history(run_id, "epoch")}
    values = sorted((m.step, m.value) for m in tracker.client.get_metric_history(run_id, metric) if m.step > 0)
    curve = [(epochs.get(step, float(step)), value) for step, value in values]
    gpus, cpus = trial_resources(tags, params, spec)
    number = tags.get("optuna.trial", "")
    return TrialRun(run_id, run.info.run_name or run_id, int(number) if number.isdigit() else -1,
                    tags.get("sweeper.method", params.get("method", "?")), tags.get(STATE_TAG, "?"), params,
                    dict(run.data.metrics), curve, artifact_bytes(tracker, run_id), gpus, cpus)


def trial_resources(tags: dict[str, str], params: dict[str, str], spec: Any) -> tuple[float, float]:
    """(GPUs, CPUs) of one trial: a `sweeper.gpu`/`sweeper.cpu` tag or `resources.*` param when logged,
    else the spec's `sweep.resources`, else one CPU."""
    def pick(name: str, default: float) -> float:
        for text in (tags.get(f"sweeper.{name}"), params.get(f"resources.{name}")):
            try:
                return float(text)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                continue
        return default

    resources = spec.sweep.resources if spec is not None else None
    return pick("gpu", resources.gpu if resources else 0.0), pick("cpu", resources.cpu if resources else 1.0)


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
    from sweeper.config import parse_scalar
    from sweeper.sweep.space import applies

    if details.spec is None:
        return {key: value for key, value in trial.params.items()
                if key in ("method", "lr") or key.startswith(f"{trial.method}.")}
    current = {key: parse_scalar(value) for key, value in trial.params.items()}
    return {key: trial.params[key] for key, distribution in details.spec.search.items()
            if key in trial.params and applies(distribution, current)}


def searched_keys(details: SweepDetails) -> list[str]:
    """The searched keys in spec order (without the spec: those any trial has)."""
    if details.spec is not None:
        return list(details.spec.search)
    return sorted({key for trial in details.trials for key in searched_params(details, trial)})
