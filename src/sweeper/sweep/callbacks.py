"""The Ray Tune callback that records a sweep's trials in MLflow: a child run per trial, from its events."""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback, Checkpoint
from ray.tune.experiment import Trial
from ray.tune.result import AUTO_RESULT_KEYS

from sweeper.sweep.search import FINAL_FLAG, OptunaSearcher
from sweeper.sweep.trainable import trial_config
from sweeper.tracking.client import Tracker
from sweeper.tracking.writer import BackgroundWriter
from sweeper.trial import STATE_FILE

SUMMARY_PREFIX = "best_"  # the trial's result (its best evaluation) is logged as best_auc, best_f1, ...
COST_KEYS = ("trainable_params", "total_params", "trainable_percent", "train_seconds", "eval_seconds",
             "samples_per_second", "peak_memory_mb", "train_samples", "epochs_run", "compute_seconds")
NOT_METRICS = {*AUTO_RESULT_KEYS, "config", "done", "checkpoint_dir_name", "should_checkpoint", FINAL_FLAG,
               "evaluation", "optimizer_step"}


def trial_metrics(result: dict[str, Any]) -> dict[str, Any]:
    """What the trial reported, without the keys Ray adds to every result."""
    return {key: value for key, value in result.items() if key not in NOT_METRICS}


class TrackingCallback(Callback):
    """One MLflow child run per Ray trial: params at start, metrics per evaluation, state and artifacts at the end.

    The MLflow requests run on a `BackgroundWriter`, in event order, so neither the trials (Ray Tune reports
    synchronously: a trial waits in `tune.report` until the driver has processed its result) nor the start of the
    next trial wait for the tracking server. `flush` waits for them (the driver does before it reads MLflow back);
    `runs` maps Ray trial ids to run ids as the writer creates them, `ended` holds the trials whose run it ended.
    """

    def __init__(self, tracker: Tracker, experiment: str, parent_run_id: str, sweep_id: str,
                 searcher: OptunaSearcher, data_digest: str) -> None:
        self.tracker = tracker
        self.experiment = experiment
        self.parent_run_id = parent_run_id
        self.sweep_id = sweep_id
        self.searcher = searcher
        self.data_digest = data_digest
        self.writer = BackgroundWriter()
        self.runs: dict[str, str] = {}
        self.numbers: dict[str, int] = {}
        self.retries: dict[str, int] = {}
        self.states: dict[str, str] = {}
        self.ended: set[str] = set()
        self.last_results: dict[str, dict[str, Any]] = {}

    def __getstate__(self) -> dict[str, Any]:
        """Ray pickles the Tuner's settings for its own records; the MLflow client, writer and searcher stay behind."""
        return {key: copy.copy(value) for key, value in self.__dict__.items()
                if key not in ("tracker", "searcher", "writer")}

    def flush(self) -> None:
        """Wait until every MLflow request of the trial events so far has been made; raise the first that failed."""
        self.writer.flush()

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        if trial.trial_id in self.numbers:  # restarted after a worker loss: same run, one more retry
            self.retries[trial.trial_id] = self.retries.get(trial.trial_id, 0) + 1
            self.writer.submit(self._set_tags, trial.trial_id, {"sweeper.retries": str(self.retries[trial.trial_id])})
            return
        config = trial_config(trial.config)
        number = trial.config["optuna_trial"]
        self.numbers[trial.trial_id] = number
        tags = {"sweeper.method": config.method, "ray.trial_id": trial.trial_id, "optuna.trial": str(number),
                "sweeper.data_digest": self.data_digest}
        self.writer.submit(self._start_run, trial.trial_id, f"trial-{number:03d}-{config.method}", config.flat(), tags,
                           now_ms())

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any) -> None:
        self.last_results[trial.trial_id] = result
        metrics = trial_metrics(result)
        if result.get(FINAL_FLAG):
            summary = {SUMMARY_PREFIX + key: value for key, value in metrics.items() if key not in COST_KEYS}
            costs = {key: metrics[key] for key in COST_KEYS if key in metrics}
            self.writer.submit(self._log, trial.trial_id, {**summary, **costs}, 0, None, now_ms())
            return
        tags = None
        if result.get("evaluation") == 1:
            tags = {"ray.node_id": result.get("node_id", ""), "ray.hostname": result.get("hostname", ""),
                    "ray.node_ip": result.get("node_ip", "")}
        self.writer.submit(self._log, trial.trial_id, metrics, int(result["evaluation"]), tags, now_ms())

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        state = self.searcher.state_of(trial.trial_id)
        self.states[trial.trial_id] = state
        self.writer.submit(self._finish, trial.trial_id, trial.checkpoint, state)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.states[trial.trial_id] = "failed"
        if trial.trial_id not in self.numbers:
            return
        error_file = Path(trial.error_file) if trial.error_file and Path(trial.error_file).is_file() else None
        self.writer.submit(self._fail, trial.trial_id, error_reason(trial), error_file)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        self.flush()

    # What the writer runs, in the order the events came.

    def _start_run(self, trial_id: str, name: str, params: dict[str, Any], tags: dict[str, str], started: int) -> None:
        self.runs[trial_id] = self.tracker.start_trial(self.experiment, self.parent_run_id, self.sweep_id, name, params,
                                                       tags, start_time=started)

    def _set_tags(self, trial_id: str, tags: dict[str, str]) -> None:
        self.tracker.set_tags(self.runs[trial_id], tags)

    def _log(self, trial_id: str, metrics: dict[str, Any], step: int, tags: dict[str, str] | None, at: int) -> None:
        self.tracker.log_metrics(self.runs[trial_id], metrics, step=step, tags=tags, timestamp=at)

    def _finish(self, trial_id: str, checkpoint: Checkpoint | None, state: str) -> None:
        run_id = self.runs[trial_id]
        if checkpoint is not None:
            with tempfile.TemporaryDirectory() as folder:
                for item in Path(checkpoint.to_directory(folder)).iterdir():
                    if item.name == STATE_FILE:  # optimiser state for resuming: not a result
                        continue
                    if item.is_dir():
                        self.tracker.log_artifacts(run_id, item, item.name)
                    else:
                        self.tracker.log_file(run_id, item)
        self.tracker.end_run(run_id, state)
        self.ended.add(trial_id)

    def _fail(self, trial_id: str, reason: str, error_file: Path | None) -> None:
        run_id = self.runs[trial_id]
        self.tracker.set_tags(run_id, {"sweeper.failure": reason[:500]})
        if error_file is not None and error_file.is_file():
            self.tracker.log_file(run_id, error_file, "error")
        self.tracker.end_run(run_id, "failed")
        self.ended.add(trial_id)


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
