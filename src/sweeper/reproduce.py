"""Re-running a logged trial from its MLflow params and comparing the metrics it gets."""

from __future__ import annotations

from dataclasses import dataclass

from sweeper.callbacks import SUMMARY_PREFIX
from sweeper.config import TrialConfig
from sweeper.errors import SweeperError
from sweeper.tracking import Tracker
from sweeper.trial import run_trial


@dataclass(frozen=True)
class Reproduction:
    """The logged and the re-run metrics of one trial."""

    run_id: str
    original: dict[str, float]
    reproduced: dict[str, float]

    def mismatches(self) -> list[str]:
        """Metric names whose values differ."""
        return [name for name, value in self.original.items() if self.reproduced.get(name) != value]


def reproduce(tracker: Tracker, run_id: str) -> Reproduction:
    """Fetch the run's params, train the same trial in this process, and pair the metrics."""
    run = tracker.trial_run(run_id)
    config = TrialConfig.from_flat(run.data.params, f"params of run {run_id}")
    original = {key.removeprefix(SUMMARY_PREFIX): value for key, value in run.data.metrics.items()
                if key.startswith(SUMMARY_PREFIX)}
    if not original:
        raise SweeperError(f"run {run_id} has no final metrics (was it pruned or failed?)")
    result = run_trial(config)
    reproduced = {name: result.metrics[name] for name in original if name in result.metrics}
    return Reproduction(run_id, original, reproduced)
