"""Ray Tune callbacks of a sweep: MLflow child runs from trial events, and the live progress table."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial
from ray.tune.result import AUTO_RESULT_KEYS
from rich.console import Console
from rich.live import Live
from rich.table import Table

from sweeper.pruning import FINAL_FLAG, OptunaSearcher
from sweeper.tracking import Tracker
from sweeper.trainable import trial_config
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
    """One MLflow child run per Ray trial: params at start, metrics per evaluation, state and artifacts at the end."""

    def __init__(self, tracker: Tracker, experiment: str, parent_run_id: str, sweep_id: str,
                 searcher: OptunaSearcher, data_digest: str) -> None:
        self.tracker = tracker
        self.experiment = experiment
        self.parent_run_id = parent_run_id
        self.sweep_id = sweep_id
        self.searcher = searcher
        self.data_digest = data_digest
        self.runs: dict[str, str] = {}
        self.numbers: dict[str, int] = {}
        self.retries: dict[str, int] = {}
        self.states: dict[str, str] = {}
        self.last_results: dict[str, dict[str, Any]] = {}

    def __getstate__(self) -> dict[str, Any]:
        """Ray pickles the Tuner's settings for its own records; the MLflow client and searcher stay behind."""
        return {key: value for key, value in self.__dict__.items() if key not in ("tracker", "searcher")}

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        if trial.trial_id in self.runs:  # restarted after a worker loss: same run, one more retry
            self.retries[trial.trial_id] = self.retries.get(trial.trial_id, 0) + 1
            self.tracker.set_tags(self.runs[trial.trial_id], {"sweeper.retries": str(self.retries[trial.trial_id])})
            return
        config = trial_config(trial.config)
        number = trial.config["optuna_trial"]
        self.numbers[trial.trial_id] = number
        tags = {"sweeper.method": config.method, "ray.trial_id": trial.trial_id, "optuna.trial": str(number),
                "sweeper.data_digest": self.data_digest}
        self.runs[trial.trial_id] = self.tracker.start_trial(
            self.experiment, self.parent_run_id, self.sweep_id, f"trial-{number:03d}-{config.method}", config.flat(), tags)

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any) -> None:
        run_id = self.runs[trial.trial_id]
        self.last_results[trial.trial_id] = result
        if result.get(FINAL_FLAG):
            metrics = trial_metrics(result)
            summary = {SUMMARY_PREFIX + key: value for key, value in metrics.items() if key not in COST_KEYS}
            self.tracker.log_metrics(run_id, {**summary, **{key: metrics[key] for key in COST_KEYS if key in metrics}})
            return
        if result.get("evaluation") == 1:
            self.tracker.set_tags(run_id, {"ray.node_id": result.get("node_id", ""), "ray.hostname": result.get("hostname", ""),
                                           "ray.node_ip": result.get("node_ip", "")})
        self.tracker.log_metrics(run_id, trial_metrics(result), step=int(result["evaluation"]))

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        run_id = self.runs[trial.trial_id]
        state = self.searcher.state_of(trial.trial_id)
        self.states[trial.trial_id] = state
        if trial.checkpoint is not None:
            with tempfile.TemporaryDirectory() as folder:
                for item in Path(trial.checkpoint.to_directory(folder)).iterdir():
                    if item.name == STATE_FILE:  # optimiser state for resuming: not a result
                        continue
                    if item.is_dir():
                        self.tracker.log_artifacts(run_id, item, item.name)
                    else:
                        self.tracker.log_file(run_id, item)
        self.tracker.end_run(run_id, state)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        run_id = self.runs.get(trial.trial_id)
        self.states[trial.trial_id] = "failed"
        if run_id is None:
            return
        reason = error_reason(trial)
        self.tracker.set_tags(run_id, {"sweeper.failure": reason[:500]})
        if trial.error_file and Path(trial.error_file).is_file():
            self.tracker.log_file(run_id, Path(trial.error_file), "error")
        self.tracker.end_run(run_id, "failed")


def error_reason(trial: Trial) -> str:
    """The last line of a failed trial's error: the exception and its message."""
    text = ""
    if trial.error_file and Path(trial.error_file).is_file():
        text = Path(trial.error_file).read_text(errors="replace")
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"


class ProgressCallback(Callback):
    """A live table of trials (state, method, key params, metric); plain lines when not on a terminal."""

    def __init__(self, metric: str, searcher: OptunaSearcher, key_params: list[str]) -> None:
        self.metric = metric
        self.searcher = searcher
        self.key_params = key_params
        self.rows: dict[str, dict[str, str]] = {}
        self.console = Console(stderr=False)
        self.live: Live | None = Live(console=self.console, auto_refresh=False) if sys.stdout.isatty() else None

    def __getstate__(self) -> dict[str, Any]:
        """Ray pickles the Tuner's settings for its own records; the terminal and searcher stay behind."""
        return {key: value for key, value in self.__dict__.items() if key not in ("console", "live", "searcher")}

    def setup(self, **info: Any) -> None:
        if self.live is not None:
            self.live.start()

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        values = trial.config["values"]
        params = " ".join(f"{key}={format_value(values[key])}" for key in self.key_params if key in values and key != "method")
        method = values.get("method", trial_config(trial.config).method)
        self.update(trial, state="running", method=method, params=params, epoch="-", metric="-")

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any) -> None:
        if self.metric in result and not result.get(FINAL_FLAG):
            self.update(trial, epoch=format_value(result.get("epoch")), metric=format_value(result[self.metric]))

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.update(trial, state=self.searcher.state_of(trial.trial_id))

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.update(trial, state="failed", metric=error_reason(trial)[:60])

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        if self.live is not None:
            self.live.stop()

    def update(self, trial: Trial, **fields: str) -> None:
        """Change one row and redraw (or print the row when not on a terminal)."""
        row = self.rows.setdefault(trial.trial_id, {"trial": str(trial.config.get("optuna_trial", "?"))})
        row.update(fields)
        if self.live is not None:
            self.live.update(self.table(), refresh=True)
        else:
            print(f"trial {row['trial']:>3} {row.get('state', ''):8} {row.get('method', ''):8} "
                  f"epoch {row.get('epoch', '-'):>4} {self.metric} {row.get('metric', '-'):>8}  {row.get('params', '')}",
                  flush=True)

    def table(self) -> Table:
        """The trial table as it stands."""
        table = Table(title="trials")
        for column in ("trial", "state", "method", "epoch", self.metric, "params"):
            table.add_column(column)
        for row in self.rows.values():
            table.add_row(row["trial"], row.get("state", ""), row.get("method", ""), row.get("epoch", ""),
                          row.get("metric", ""), row.get("params", ""))
        return table


def format_value(value: Any) -> str:
    """Numbers short, everything else as text."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)

