"""What a sweep runs beside its search: baselines before the trials, repeats after them.

**Baselines** (JIT-DP): logistic regressions fitted in seconds on exactly the trials' training split
(`data.split.trial_splits` of the spec's base trial) and scored on the same validation (and test) commits. Each is a
child run of the sweep (`sweeper.role: baseline`, `sweeper.baseline: NAME`) holding the metrics trials log
(`best_auc`, ..., `auc_ci_low`, `auc_ci_high`) and its validation scores as `predictions.csv` (`id,label,score`),
so the report compares trials and baselines on the same commits. A logistic regression has no seed (it is
deterministic), so baselines are never repeated.

**Repeats** (`sweep.repeats: N`): the best configuration of each method (by the sweep's metric) trained again
with the seeds seed + 1 ... seed + N, on the same commits (`data.seed` keeps the trial's sample and split), so
the spread over seeds is the training's alone. They run through Ray Tune like trials (a second Tuner: same
resources, no pruning) and are recorded like trials (`sweeper.role: repeat`, tagged with the run id and Optuna
number of the trial they repeat), but never told to the Optuna study nor counted as the sweep's trials.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher

from sweeper.baselines import VALID, BaselineResult, baselines_for
from sweeper.config import TrialConfig
from sweeper.data.records import Dataset
from sweeper.errors import SweeperError
from sweeper.predictions import SCORES, write_predictions
from sweeper.spec import Spec
from sweeper.sweep.callbacks import TrackingCallback
from sweeper.tracking.client import Tracker
from sweeper.tracking.datasets import split_inputs
from sweeper.tracking.schema import (CI_HIGH, CI_LOW, PREDICTIONS_FILE, Role, State, Tag, final_metric_name,
                                     window_metric_name)

# --- baselines ------------------------------------------------------------------------------------------


def log_baselines(tracker: Tracker, spec: Spec, dataset: Dataset, parent_run_id: str, sweep_id: str) -> None:
    """Fit the spec's baselines and log each as a child run of the sweep; a baseline that cannot run here (no
    features, one class) is a FAILED run saying why. Bad data stops nothing: the trials report it themselves."""
    try:
        results = baselines_for(spec.base_trial(), spec.baseline_names(), dataset)
    except SweeperError as error:
        print(f"baselines not fitted: {error}", flush=True)
        return
    config = spec.base_trial()
    labels = {record.id: record.label for record in dataset.records}
    inputs = split_inputs(config, dataset)  # the split the baselines fitted on, as the trials log theirs
    for result in results:
        run_id = tracker.start_trial(spec.name, parent_run_id, sweep_id, result.name, baseline_params(result, config),
                                     {Tag.ROLE: Role.BASELINE, Tag.BASELINE: result.name,
                                      Tag.DATA_DIGEST: dataset.digest})
        tracker.log_datasets(run_id, inputs)
        if result.skipped:
            print(f"baseline {result.name} skipped: {result.skipped}", flush=True)
            tracker.set_tags(run_id, {Tag.FAILURE: result.skipped[:500]})
            tracker.end_run(run_id, State.FAILED, f"baseline {result.name}: skipped: {result.skipped[:500]}")
            continue
        tracker.log_metrics(run_id, baseline_metrics(result))
        for number, figures in enumerate(result.windows, start=1):  # rolling: each window's own, at its step
            tracker.log_metrics(run_id, {window_metric_name(name): value for name, value in figures.items()},
                                step=number)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / PREDICTIONS_FILE
            write_predictions(path, SCORES, [(id_, labels[id_], score)
                                             for id_, score in zip(result.valid_ids, result.valid_scores)])
            tracker.log_file(run_id, path)
        shown = describe_value(result, spec.metric)
        tracker.end_run(run_id, State.COMPLETE, f"baseline {result.name}: {shown} on the trials' validation commits "
                                                f"({result.description})")
        print(f"baseline {result.name}: {shown}", flush=True)


def baseline_params(result: BaselineResult, config: TrialConfig) -> dict[str, Any]:
    """What the baseline is and which commits it saw: the data keys of the trials' split."""
    data = config.data
    return {"baseline": result.name, "description": result.description, "data.path": data.path,
            "data.sample": data.sample, "data.seed": config.seed if data.seed is None else data.seed,
            "data.split.kind": data.split.kind, "data.split.valid": data.split.valid,
            "data.split.test": data.split.test, "data.split.folds": data.split.folds,
            "data.train_fraction": data.train_fraction}


def baseline_metrics(result: BaselineResult) -> dict[str, float]:
    """Under the names trials use: validation metrics as `best_*` (intervals unprefixed, `auc_ci_low`), test
    metrics as `best_test_*` (intervals `test_auc_ci_low`), and the fit as the costs."""
    metrics: dict[str, float] = {}
    for split, values in result.metrics.items():
        for name, value in values.items():
            metrics[final_metric_name(name if split == VALID else f"{split}_{name}")] = value
    costs = {"trainable_params": result.parameters, "total_params": result.parameters,
             "train_seconds": result.fit_seconds, "compute_seconds": result.fit_seconds}
    return metrics | {name: float(value) for name, value in costs.items()}


def describe_value(result: BaselineResult, metric: str) -> str:
    """`auc 0.7120 [0.6310, 0.7930]` of a baseline's validation metrics (the metric alone if it has no interval)."""
    valid = result.metrics.get(VALID, {})
    if metric not in valid:
        return "-"
    low, high = valid.get(metric + CI_LOW, math.nan), valid.get(metric + CI_HIGH, math.nan)
    interval = "" if math.isnan(low) else f" [{low:.4f}, {high:.4f}]"
    return f"{metric} {valid[metric]:.4f}{interval}"


# --- repeats --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RepeatJob:
    """One repeat: the trial it repeats (run id, Optuna number, method) and the values it trains with: the trial's
    searched values with another `seed` and the trial's `data.seed`."""

    run_id: str
    number: int
    method: str
    values: dict[str, Any]

    @property
    def seed(self) -> int:
        return int(self.values["seed"])


def plan_repeats(spec: Spec, best: list[tuple[str, int, str]], searched: dict[int, dict[str, Any]],
                 done: set[tuple[str, int]]) -> list[RepeatJob]:
    """`sweep.repeats` jobs for each (run id, Optuna number, method) in `best`, rebuilt from the trial's searched
    values (`searched[number]`, as the study holds them); seeds seed + 1 ... seed + N; those in `done`
    ((run id, seed) of finished repeats, when resuming) are left out.

        >>> from sweeper.spec import parse_spec
        >>> spec = parse_spec({"name": "x", "sweep": {"repeats": 2}, "search": {"lr": {"float": [0.001, 0.01]}}}, "x")
        >>> jobs = plan_repeats(spec, [("run7", 7, "lora")], {7: {"lr": 0.002}}, done={("run7", 2)})
        >>> [(job.number, job.values) for job in jobs]
        [(7, {'lr': 0.002, 'seed': 1, 'data.seed': 0})]
    """
    jobs = []
    for run_id, number, method in best:
        if number not in searched:
            print(f"repeats of trial {number} skipped: the Optuna study does not hold its values", flush=True)
            continue
        config = spec.trial(searched[number])
        data_seed = config.seed if config.data.seed is None else config.data.seed
        for offset in range(1, spec.sweep.repeats + 1):
            if (run_id, config.seed + offset) not in done:
                values = {**searched[number], "seed": config.seed + offset, "data.seed": data_seed}
                jobs.append(RepeatJob(run_id, number, method, values))
    return jobs


class RepeatSearcher(Searcher):
    """Hands Ray Tune the repeat jobs in order, then FINISHED. Nothing is told to Optuna: a repeat ends complete, or
    failed when its final result has no finite value of the metric (the trainable reports a failure that way)."""

    def __init__(self, jobs: list[RepeatJob], metric: str, mode: str) -> None:
        super().__init__(metric=metric, mode=mode)
        self.jobs = jobs
        self.started: dict[str, RepeatJob] = {}
        self.failed: set[str] = set()

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return metric in (None, self.metric) and mode in (None, self.mode)

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if len(self.started) == len(self.jobs):
            return Searcher.FINISHED
        job = self.started[trial_id] = self.jobs[len(self.started)]
        return {"values": job.values, "optuna_trial": job.number, "repeat_of": job.run_id}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        try:
            value = float((result or {})[self.metric])
        except (KeyError, TypeError, ValueError):
            value = math.nan
        if error or not math.isfinite(value):
            self.failed.add(trial_id)

    def state_of(self, trial_id: str) -> str:
        return State.FAILED if trial_id in self.failed else State.COMPLETE


class RepeatTracking(TrackingCallback):
    """The trials' MLflow callback, recording repeat runs: `repeat-NNN-METHOD-seedS`, role repeat, and the trial
    they repeat."""

    def describe(self, tune_config: dict[str, Any], config: TrialConfig, number: int) -> tuple[str, dict[str, str]]:
        return (f"repeat-{number:03d}-{config.method}-seed{config.seed}",
                {Tag.ROLE: Role.REPEAT, Tag.REPEAT_OF: tune_config["repeat_of"], Tag.REPEAT_OF_TRIAL: str(number)})
