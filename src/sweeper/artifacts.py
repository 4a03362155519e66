"""A trial run's artifacts fetched from MLflow, and the trained model rebuilt from them.

    >>> with downloaded_trial(tracker, run_id) as trial:
    ...     model = trained_model(trial)
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sweeper.config import TrialConfig
from sweeper.errors import SweeperError
from sweeper.methods import TrainableModel
from sweeper.tracking.client import STATE_TAG, Tracker


@dataclass(frozen=True)
class TrialArtifacts:
    """A trial's resolved config, its logged metrics and the folder holding its downloaded `model/`."""

    run_id: str
    state: str
    config: TrialConfig
    metrics: dict[str, float]
    folder: Path

    @property
    def model_dir(self) -> Path:
        return self.folder / "model"


@contextmanager
def downloaded_trial(tracker: Tracker, run_id: str) -> Iterator[TrialArtifacts]:
    """Download a trial's `model/` (and `config.json` when logged) into a temporary folder, removed afterwards."""
    run = tracker.trial_run(run_id)
    names = {item.path for item in tracker.client.list_artifacts(run_id)}
    if "model" not in names:
        state = run.data.tags.get(STATE_TAG, "?")
        raise SweeperError(f"run {run_id} ({state}) logged no trained model; pick a completed trial with `sweeper best`")
    with tempfile.TemporaryDirectory(prefix="sweeper-run-") as folder:
        root = Path(folder)
        tracker.client.download_artifacts(run_id, "model", folder)
        if "config.json" in names:
            config_text = Path(tracker.client.download_artifacts(run_id, "config.json", folder)).read_text()
            config = TrialConfig.model_validate_json(config_text)
        else:  # a pruned trial's last checkpoint: the params are the resolved config
            config = TrialConfig.from_flat(dict(run.data.params), f"params of run {run_id}")
        yield TrialArtifacts(run_id, run.data.tags.get(STATE_TAG, "?"), config, dict(run.data.metrics), root)


def trained_model(trial: TrialArtifacts) -> TrainableModel:
    """The backbone with the run's trained weights, in eval mode."""
    from sweeper.methods import load_trained
    from sweeper.tasks import task_for

    return load_trained(task_for(trial.config).load_model(trial.config.backbone), trial.config, trial.model_dir)
