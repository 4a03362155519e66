"""A trial's artifacts: which files it saves, under which names, and how they are read back (from a folder or MLflow).

A trial folder (written by `run_trial`, logged as the MLflow run's artifacts)::

    model/            what trained, in its method's format (see sweeper.methods)
    config.json       the resolved TrialConfig
    metrics.json      best metrics, costs, every evaluation's metrics, the data digest
    predictions.csv   validation predictions: id,label,score (jitdp) or id,reference,prediction (cmg)
    feature_scaler.json   with `features: expert` only: the expert features' scaler, fitted on the training split;
                      predict and export scale new commits' features with it (`FeatureScaler.to_json`)

A checkpoint folder (Ray Tune's, to resume a trial whose worker died) holds `model/` and `training_state.pt`:
the optimiser, schedule, training progress and random number generators' states; with `features: expert` also
`feature_scaler.json`, since a pruned trial's last checkpoint is what its run logs, and its weights are of no use to
predict, export or register without the scaler.
"""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel

from sweeper.config import TrialConfig
from sweeper.data.features import FeatureScaler
from sweeper.errors import SweeperError
from sweeper.methods import TrainableModel, load_trained, save_trained
from sweeper.predictions import Prediction, write_predictions
from sweeper.tasks import Task, task_for
from sweeper.tasks.expert_head import load_with_expert_head
from sweeper.timings import timed
from sweeper.tracking.client import Tracker
from sweeper.tracking.schema import PREDICTIONS_FILE, Tag

MODEL_DIR = "model"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
SCALER_FILE = "feature_scaler.json"
STATE_FILE = "training_state.pt"  # checkpoints only: never logged as a result


def write_trial(folder: Path, model: TrainableModel, config: TrialConfig, summary: dict[str, Any], task: Task,
                items: list[Any], predictions: list[Prediction]) -> None:
    """What was trained, the resolved config, the metrics summary, the validation predictions, and the task's
    expert-feature scaler when it has one."""
    folder.mkdir(parents=True, exist_ok=True)
    save_trained(model, config, folder / MODEL_DIR)
    (folder / CONFIG_FILE).write_text(json.dumps(config.model_dump(mode="json"), indent=2))
    (folder / METRICS_FILE).write_text(json.dumps(summary, indent=2))
    write_predictions(folder / PREDICTIONS_FILE, task.prediction_columns,
                      [(item.id, task.truth(item), value) for item, value in zip(items, predictions)])
    if task.scaler is not None:
        (folder / SCALER_FILE).write_text(task.scaler.to_json())


def read_config(folder: Path) -> TrialConfig:
    """The resolved config a trial folder holds."""
    return TrialConfig.model_validate_json((folder / CONFIG_FILE).read_text())


def read_scaler(folder: Path) -> FeatureScaler | None:
    """The expert-feature scaler a trial folder holds; None when it has none (`features: none`)."""
    path = folder / SCALER_FILE
    return FeatureScaler.from_json(path.read_text()) if path.is_file() else None


def load_trained_model(config: TrialConfig, directory: Path, base: PreTrainedModel | None = None) -> TrainableModel:
    """The trained model a trial saved in `directory` (its `model/`), on `base` (by default a fresh backbone from
    the trial's task); in eval mode.

    With `features: expert` the backbone gets the expert-feature head first (`load_with_expert_head`)."""
    base = base if base is not None else task_for(config).load_model(config.backbone)
    if config.features == "expert":
        return load_with_expert_head(base, config, directory)
    return load_trained(base, config, directory)


def save_checkpoint(folder: Path, model: TrainableModel, config: TrialConfig, progress: Any,
                    optimizer: torch.optim.Optimizer, schedule: torch.optim.lr_scheduler.LRScheduler,
                    scaler: FeatureScaler | None = None) -> None:
    """Everything the steps after this point depend on: trained weights, optimiser, schedule, progress and the
    random number generators, so a trial resumed from here goes on as if it had never stopped; and what scoring the
    weights needs (the expert features' scaler), so a pruned trial's weights can be used."""
    folder.mkdir(parents=True, exist_ok=True)
    with timed("trial.checkpoint"):
        save_trained(model, config, folder / MODEL_DIR)
        if scaler is not None:
            (folder / SCALER_FILE).write_text(scaler.to_json())
        torch.save({"progress": progress, "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                    "weights": {name: p.detach().cpu() for name, p in model.named_parameters() if p.requires_grad},
                    "rng": rng_states()}, folder / STATE_FILE)


def load_checkpoint(folder: Path, model: TrainableModel, optimizer: torch.optim.Optimizer,
                    schedule: torch.optim.lr_scheduler.LRScheduler) -> Any | None:
    """Put a checkpoint's weights, optimiser, schedule and random states back; its progress, or None without one."""
    path = folder / STATE_FILE
    if not path.is_file():
        return None
    state = torch.load(path, weights_only=False)
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state["weights"].items():
            parameters[name].copy_(value)
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    set_rng_states(state["rng"])
    return state["progress"]


def rng_states() -> dict[str, Any]:
    """The states of every random number generator training draws from (dropout, shuffles)."""
    states: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


@dataclass(frozen=True)
class TrialArtifacts:
    """A trial's resolved config, its logged metrics, the folder holding its downloaded `model/`, and its
    expert-feature scaler (None unless `features: expert`)."""

    run_id: str
    state: str
    config: TrialConfig
    metrics: dict[str, float]
    folder: Path
    scaler: FeatureScaler | None = None

    @property
    def model_dir(self) -> Path:
        return self.folder / MODEL_DIR


@contextmanager
def downloaded_trial(tracker: Tracker, reference: str) -> Iterator[TrialArtifacts]:
    """Download a trial's `model/` (and `config.json` when logged) into a temporary folder, removed afterwards.
    `reference` is a run id or a registered version (`models:/NAME/VERSION`, `models:/NAME@ALIAS`) of a trial.

    Usage::

        with downloaded_trial(tracker, run_id) as trial:
            model = trained_model(trial)
    """
    run_id = tracker.resolve_run(reference)
    run = tracker.trial_run(run_id)
    names = {item.path for item in tracker.client.list_artifacts(run_id)}
    state = run.data.tags.get(Tag.STATE, "?")
    if MODEL_DIR not in names:
        raise SweeperError(f"run {run_id} ({state}) logged no trained model; pick a completed trial with `sweeper best`")
    with tempfile.TemporaryDirectory(prefix="sweeper-run-") as folder:
        root = Path(folder)
        tracker.client.download_artifacts(run_id, MODEL_DIR, folder)
        if CONFIG_FILE in names:
            tracker.client.download_artifacts(run_id, CONFIG_FILE, folder)
            config = read_config(root)
        else:  # a pruned trial's last checkpoint: the params are the resolved config
            config = TrialConfig.from_flat(dict(run.data.params), f"params of run {run_id}")
        if config.features == "expert":
            if SCALER_FILE not in names:
                raise SweeperError(f"run {run_id} ({state}) was trained with expert features but logged no "
                                   f"{SCALER_FILE} to scale them; pick a completed trial with `sweeper best`")
            tracker.client.download_artifacts(run_id, SCALER_FILE, folder)
        yield TrialArtifacts(run_id, state, config, dict(run.data.metrics), root, read_scaler(root))


def trained_model(trial: TrialArtifacts) -> TrainableModel:
    """The backbone with the run's trained weights, in eval mode."""
    return load_trained_model(trial.config, trial.model_dir)
