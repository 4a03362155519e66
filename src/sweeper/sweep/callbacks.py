"""The Ray Tune callback that records a sweep's trials in MLflow: a child run per trial, from its events.

A failed trial's run ends FAILED with the reason (`sweeper.failure`), its kind (`sweeper.failure_kind`) and the
traceback under `error/`: a deterministic failure arrives as the trial's final result (the trainable caught it, Ray
does not retry it), an infrastructure one as Ray's trial error once its retries ran out. Each retry (Ray restarting
the trial from its checkpoint after losing its worker) counts in `sweeper.retries`, with its reason.
"""

from __future__ import annotations

import copy
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ray.tune import Callback, Checkpoint
from ray.tune.experiment import Trial
from ray.tune.result import AUTO_RESULT_KEYS

from sweeper.artifacts import STATE_FILE
from sweeper.config import TrialConfig
from sweeper.data.records import Dataset
from sweeper.errors import SweeperError
from sweeper.sweep.trainable import (EVALUATION, FAILURE, FINAL, LAST_EVALUATION, NODE, OPTIMIZER_STEP, TRIAL_TAGS,
                                     trial_config)
from sweeper.timings import timed
from sweeper.tracking.client import Tracker
from sweeper.tracking.datasets import split_inputs
from sweeper.recorded.notes import trial_label, trial_note
from sweeper.tracking.schema import COSTS, ERROR_FOLDER, FailureKind, State, Tag, final_metric_name
from sweeper.tracking.writer import BackgroundWriter

NOT_METRICS = {*AUTO_RESULT_KEYS, "config", "done", "checkpoint_dir_name", "should_checkpoint", FINAL, EVALUATION,
               OPTIMIZER_STEP, NODE, FAILURE, LAST_EVALUATION, TRIAL_TAGS}


def trial_metrics(result: dict[str, Any]) -> dict[str, Any]:
    """What the trial reported, without the keys Ray adds to every result."""
    return {key: value for key, value in result.items() if key not in NOT_METRICS}


class Outcomes(Protocol):
    """What the callback asks the searcher: its metric, how a trial ended, and that one ended without a result (an
    `OptunaSearcher`, or the repeats' `RepeatSearcher`)."""

    @property
    def metric(self) -> str | None: ...

    def state_of(self, trial_id: str) -> str: ...

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None: ...


@dataclass
class TrackedTrial:
    """What the callback knows of one Ray trial: its Optuna number, its MLflow run (once the writer created it),
    how often it was restarted, whether its final result was logged, how it ended (None while running) and whether
    its run was ended; and for its note, what it is (`label`), how many evaluations it has had of how many planned
    (None: not known in advance), and its best value of its `metric` (`outcome`)."""

    number: int
    run_id: str | None = None
    retries: int = 0
    final_logged: bool = False
    state: str | None = None
    run_ended: bool = False
    label: str = ""
    metric: str = ""
    evaluations: int = 0
    planned: int | None = None
    outcome: str | None = None

    def note(self, state: str, reason: str | None = None) -> str:
        return trial_note(self.label, state, self.evaluations, self.planned, reason, self.outcome)


class TrackingCallback(Callback):
    """One MLflow child run per Ray trial: params at start, metrics per evaluation, state and artifacts at the end.

    The MLflow requests run on a `BackgroundWriter`, in event order, so neither the trials (Ray Tune reports
    synchronously: a trial waits in `tune.report` until the driver has processed its result) nor the start of the
    next trial wait for the tracking server. `flush` waits for them (the driver does before it reads MLflow back).
    """

    def __init__(self, tracker: Tracker, experiment: str, parent_run_id: str, sweep_id: str,
                 searcher: Outcomes, dataset: Dataset) -> None:
        self.tracker = tracker
        self.experiment = experiment
        self.parent_run_id = parent_run_id
        self.sweep_id = sweep_id
        self.searcher = searcher
        self.dataset = dataset
        self.data_digest = dataset.digest
        self.writer = BackgroundWriter()
        self.trials: dict[str, TrackedTrial] = {}  # by Ray trial id

    def __getstate__(self) -> dict[str, Any]:
        """Ray pickles the Tuner's settings for its own records; the MLflow client, writer and searcher stay behind."""
        return {key: copy.copy(value) for key, value in self.__dict__.items()
                if key not in ("tracker", "searcher", "writer", "dataset")}

    def flush(self) -> None:
        """Wait until every MLflow request of the trial events so far has been made; raise the first that failed."""
        self.writer.flush()

    def close(self) -> None:
        """After the sweep (or its interruption): trials that never ended fail in the Optuna study, and the runs this
        session opened and never ended end as KILLED."""
        for trial_id, trial in self.trials.items():
            if trial.state is None:
                self.searcher.on_trial_complete(trial_id, error=True)
            if trial.run_id is not None and not trial.run_ended:
                self.tracker.end_run(trial.run_id, State.KILLED, trial.note(State.KILLED))

    @timed("callbacks.on_trial_start")
    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        if trial.trial_id in self.trials:  # restarted after a worker loss (see on_trial_recover): the same run
            return
        config = trial_config(trial.config)
        tracked = self.trials[trial.trial_id] = TrackedTrial(
            trial.config["optuna_trial"], label=trial_label(config), metric=config.metric,
            planned=planned_evaluations(config))
        name, tags = self.describe(trial.config, config, tracked.number)
        tags |= {Tag.METHOD: config.method, Tag.RAY_TRIAL: trial.trial_id, Tag.DATA_DIGEST: self.data_digest,
                 Tag.RETRIES: "0"}
        self.writer.submit(self._start_run, tracked, name, config, tags, now_ms())

    def describe(self, tune_config: dict[str, Any], config: TrialConfig, number: int) -> tuple[str, dict[str, str]]:
        """The run's name and the tags that say what it is: here an Optuna trial (a subclass records other runs)."""
        return f"trial-{number:03d}-{config.method}", {Tag.OPTUNA_TRIAL: str(number)}

    @timed("callbacks.on_trial_result")
    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any) -> None:
        tracked = self.trials[trial.trial_id]
        metrics = trial_metrics(result)
        if result.get(FINAL):
            if result.get(FAILURE) or tracked.final_logged:  # a failure has no metrics; a re-sent final is logged
                return
            tracked.final_logged = True
            summary = {final_metric_name(key): value for key, value in metrics.items() if key not in COSTS}
            if isinstance(metrics.get(tracked.metric), (int, float)):
                tracked.outcome = f"best {tracked.metric} {metrics[tracked.metric]:.4f}"
            costs = {key: metrics[key] for key in COSTS if key in metrics}
            self.writer.submit(self._log, tracked, {**summary, **costs}, 0, None, now_ms())
            return
        tags = None
        if result.get(EVALUATION) == 1:
            tags = {Tag.RAY_NODE: result.get(NODE, ""), Tag.RAY_HOST: result.get("hostname", ""),
                    Tag.RAY_NODE_IP: result.get("node_ip", ""), **result.get(TRIAL_TAGS, {})}
        tracked.evaluations = max(tracked.evaluations, int(result[EVALUATION]))
        self.writer.submit(self._log, tracked, metrics, int(result[EVALUATION]), tags, now_ms())

    @timed("callbacks.on_trial_complete")
    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        tracked = self.trials[trial.trial_id]
        tracked.state = self.searcher.state_of(trial.trial_id)
        failure = None
        if tracked.state == State.FAILED:  # raised by the trial itself, or no finite value of the metric
            reason = (trial.last_result or {}).get(FAILURE) or f"the final {self.searcher.metric} is not a number"
            failure = {Tag.FAILURE: reason[:500], Tag.FAILURE_KIND: FailureKind.DETERMINISTIC}
        self.writer.submit(self._finish, tracked, trial.checkpoint, failure)

    @timed("callbacks.on_trial_recover")
    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        tracked = self.trials.get(trial.trial_id)
        if tracked is None:  # lost before it started: nothing was recorded
            return
        tracked.retries += 1
        self.writer.submit(self._set_tags, tracked, {Tag.RETRIES: str(tracked.retries),
                                                     Tag.RETRY_REASON: error_reason(trial)[:500]})

    @timed("callbacks.on_trial_error")
    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        tracked = self.trials.get(trial.trial_id)
        if tracked is None:  # failed before it started: nothing was recorded
            return
        tracked.state = State.FAILED
        error_file = Path(trial.error_file) if trial.error_file and Path(trial.error_file).is_file() else None
        self.writer.submit(self._fail, tracked, error_reason(trial), error_file)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        self.flush()

    # What the writer runs, in the order the events came.

    def _start_run(self, tracked: TrackedTrial, name: str, config: TrialConfig, tags: dict[str, str],
                   started: int) -> None:
        tracked.run_id = self.tracker.start_trial(self.experiment, self.parent_run_id, self.sweep_id, name,
                                                  config.flat(), tags, start_time=started)
        try:
            inputs = split_inputs(config, self.dataset)
        except SweeperError:  # data the trial cannot split: the trial fails on it and its run says why
            inputs = []
        self.tracker.log_datasets(tracked.run_id, inputs)

    def _set_tags(self, tracked: TrackedTrial, tags: dict[str, str]) -> None:
        self.tracker.set_tags(run_of(tracked), tags)

    def _log(self, tracked: TrackedTrial, metrics: dict[str, Any], step: int, tags: dict[str, str] | None,
             at: int) -> None:
        self.tracker.log_metrics(run_of(tracked), metrics, step=step, tags=tags, timestamp=at)

    def _finish(self, tracked: TrackedTrial, checkpoint: Checkpoint | None, failure: dict[str, str] | None) -> None:
        run_id = run_of(tracked)
        if failure:
            self.tracker.set_tags(run_id, failure)
        if checkpoint is not None:
            with tempfile.TemporaryDirectory() as folder:
                for item in Path(checkpoint.to_directory(folder)).iterdir():
                    if item.name == STATE_FILE:  # optimiser state for resuming: not a result
                        continue
                    if item.is_dir():
                        self.tracker.log_artifacts(run_id, item, item.name)
                    else:
                        self.tracker.log_file(run_id, item)
        state = tracked.state or State.COMPLETE
        self.tracker.end_run(run_id, state, tracked.note(state, failure[Tag.FAILURE] if failure else None))
        tracked.run_ended = True

    def _fail(self, tracked: TrackedTrial, reason: str, error_file: Path | None) -> None:
        run_id = run_of(tracked)
        self.tracker.set_tags(run_id, {Tag.FAILURE: reason[:500], Tag.FAILURE_KIND: FailureKind.INFRASTRUCTURE})
        if error_file is not None:
            self.tracker.log_file(run_id, error_file, ERROR_FOLDER)
        self.tracker.end_run(run_id, State.FAILED, tracked.note(State.FAILED, reason[:500]))
        tracked.run_ended = True


def planned_evaluations(config: TrialConfig) -> int | None:
    """The reports a trial makes: one per epoch, one per rolling window (`data.split.folds`), or not known in
    advance (evaluations every N steps)."""
    if config.data.split.folds > 1:
        return config.data.split.folds
    return None if config.eval_every_steps else config.epochs


def run_of(tracked: TrackedTrial) -> str:
    """The trial's run id; the writer created the run before any later call for the trial runs."""
    assert tracked.run_id is not None, "the run is created by the first call the writer runs for a trial"
    return tracked.run_id


def now_ms() -> int:
    """MLflow's timestamps: milliseconds since the epoch."""
    return int(time.time() * 1000)


def error_reason(trial: Trial) -> str:
    """The last line of a failed trial's error: the exception and its message."""
    text = ""
    if trial.error_file and Path(trial.error_file).is_file():
        text = Path(trial.error_file).read_text(errors="replace")
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"
