"""The live progress table of a sweep: one row per trial (state, method, key params, metric)."""

from __future__ import annotations

import sys
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial
from rich.console import Console
from rich.live import Live
from rich.table import Table

from sweeper.sweep.callbacks import error_reason
from sweeper.sweep.search import OptunaSearcher
from sweeper.sweep.trainable import FINAL, trial_config


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
        if self.metric in result and not result.get(FINAL):
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

