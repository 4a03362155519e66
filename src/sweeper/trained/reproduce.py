"""Re-running a logged trial from its MLflow params and comparing the metrics and predictions it gets."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from sweeper.config import TrialConfig
from sweeper.errors import SpecError, SweeperError
from sweeper.tracking.client import Tracker
from sweeper.tracking.schema import BEST_PREFIX
from sweeper.artifacts import PREDICTIONS_FILE, read_predictions
from sweeper.trial import run_trial


@dataclass(frozen=True)
class Reproduction:
    """The logged and the re-run metrics of one trial, and how many validation predictions differ
    (None when the run logged no predictions)."""

    run_id: str
    original: dict[str, float]
    reproduced: dict[str, float]
    predictions: int = 0
    predictions_differing: int | None = None

    def mismatches(self) -> list[str]:
        """Metric names whose values differ, and `predictions` if any prediction does."""
        names = [name for name, value in self.original.items() if self.reproduced.get(name) != value]
        return names + (["predictions"] if self.predictions_differing else [])


def reproduce(tracker: Tracker, run_id: str) -> Reproduction:
    """Fetch the run's params, train the same trial in this process, and pair the metrics and predictions."""
    run = tracker.trial_run(run_id)
    try:
        config = TrialConfig.from_flat(run.data.params, f"params of run {run_id}")
    except SpecError as error:  # changed after the run (by hand, in the store): say where the true values are
        fix = "; ".join(filter(None, [error.fix, "the run's config.json artifact holds the values it ran with"]))
        raise SpecError(error.source, error.field, error.problem, fix) from None
    original = {key.removeprefix(BEST_PREFIX): value for key, value in run.data.metrics.items()
                if key.startswith(BEST_PREFIX)}
    if not original:
        raise SweeperError(f"run {run_id} has no final metrics (was it pruned or failed?)")
    with tempfile.TemporaryDirectory(prefix="sweeper-reproduce-") as folder:
        again, logged = Path(folder) / "again", Path(folder) / "logged"
        result = run_trial(config, again)
        reproduced = {name: result.metrics[name] for name in original if name in result.metrics}
        names = {item.path for item in tracker.client.list_artifacts(run_id)}
        if PREDICTIONS_FILE not in names:
            return Reproduction(run_id, original, reproduced)
        logged.mkdir()
        tracker.client.download_artifacts(run_id, PREDICTIONS_FILE, str(logged))
        before, after = read_predictions(logged), read_predictions(again)
    differing = sum(a != b for a, b in zip(before, after)) + abs(len(before) - len(after))
    return Reproduction(run_id, original, reproduced, len(before), differing)
