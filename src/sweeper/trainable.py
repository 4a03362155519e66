"""The Ray Tune trainable: a thin wrapper that runs `run_trial` inside a Ray worker.

Each evaluation is reported to Tune with a checkpoint (the weights trained so far and the training
state, so a trial whose worker dies resumes from it on another node); the last
report carries the best evaluation's metrics, the cost figures and the trial's artifacts, flagged
`final` so the pruner does not count it as another step.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import ray
from ray import tune

from sweeper.config import TrialConfig
from sweeper.pruning import FINAL_FLAG
from sweeper.trial import Evaluation, run_trial


def trial_config(config: dict[str, Any]) -> TrialConfig:
    """The resolved trial config from Tune's config: the spec's base trial plus the searched values."""
    return TrialConfig.model_validate(config["base"]).with_overrides(config["values"], "search")


def train_in_ray(config: dict[str, Any]) -> None:
    """Ray Tune function trainable; after a worker loss Ray restarts it with its last checkpoint."""
    trial = trial_config(config)
    node = {"node_id": ray.get_runtime_context().get_node_id()}

    def report(evaluation: Evaluation) -> None:
        with tempfile.TemporaryDirectory() as folder:
            evaluation.save(Path(folder))
            metrics = {**evaluation.metrics, "evaluation": evaluation.index, "optimizer_step": evaluation.step,
                       "compute_seconds": evaluation.seconds, **node}
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    checkpoint = tune.get_checkpoint()
    with tempfile.TemporaryDirectory() as output, tempfile.TemporaryDirectory() as previous:
        resume_from = Path(checkpoint.to_directory(previous)) if checkpoint else None
        result = run_trial(trial, Path(output), report, resume_from=resume_from)
        seconds = result.costs["train_seconds"] + result.costs["eval_seconds"]
        final = {**result.metrics, **result.costs, "compute_seconds": seconds, FINAL_FLAG: 1, **node}
        tune.report(final, checkpoint=tune.Checkpoint.from_directory(output))
