"""The Ray Tune trainable: a thin wrapper that runs `run_trial` inside a Ray worker.

Each evaluation is reported to Tune with a checkpoint (the weights trained so far and the training
state, so a trial whose worker dies resumes from it on another node); the last
report carries the best evaluation's metrics, the cost figures and the trial's artifacts, flagged
`final` so the pruner does not count it as another step.

Ray reuses a worker process for trial after trial (`reuse_actors`), so what every trial of a sweep reads
the same way, its data file, is read once per worker and kept (`trial_dataset`).
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any

import ray
from ray import tune

from sweeper.config import TrialConfig
from sweeper.data.records import Dataset, read_records
from sweeper.timings import timed
from sweeper.trial import Evaluation, run_trial

# Keys of the results a trial reports to Tune, beside its metrics.
FINAL = "final"  # set on the last result: the trial's best metrics and its costs, not another evaluation
EVALUATION = "evaluation"  # the evaluation's number, from 1: the pruner's step and MLflow's
OPTIMIZER_STEP = "optimizer_step"
NODE = "node_id"  # the Ray node the trial ran on


def trial_config(config: dict[str, Any]) -> TrialConfig:
    """The resolved trial config from Tune's config: the spec's base trial plus the searched values."""
    return TrialConfig.model_validate(config["base"]).with_overrides(config["values"], "search")


def trial_dataset(config: TrialConfig) -> Dataset:
    """The records of `config`'s data, read once per worker process while the file stays the same."""
    path = config.data.path
    try:
        stat = Path(path).expanduser().stat()
        version: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
    except (OSError, ValueError):  # s3:// and bundled: sources are not local files
        version = None
    return read_dataset(path, config.task, config.data.skip_bad, version)


@functools.lru_cache(maxsize=1)
def read_dataset(path: str, task: str, skip_bad: bool, version: tuple[int, int] | None) -> Dataset:
    """`read_records`, remembered for the last (source, task, skip_bad, file version) asked for."""
    return read_records(path, task, skip_bad)


def train_in_ray(config: dict[str, Any]) -> None:
    """Ray Tune function trainable; after a worker loss Ray restarts it with its last checkpoint."""
    trial = trial_config(config)
    node = {NODE: ray.get_runtime_context().get_node_id()}

    def report(evaluation: Evaluation) -> None:
        with tempfile.TemporaryDirectory() as folder:
            evaluation.save(Path(folder))
            metrics = {**evaluation.metrics, EVALUATION: evaluation.index, OPTIMIZER_STEP: evaluation.step,
                       "compute_seconds": evaluation.seconds, **node}
            with timed("trainable.report"):  # Tune reports synchronously: the trial waits for the driver here
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    with timed("trainable.run") as event:
        checkpoint = tune.get_checkpoint()
        with tempfile.TemporaryDirectory() as output, tempfile.TemporaryDirectory() as previous:
            resume_from = Path(checkpoint.to_directory(previous)) if checkpoint else None
            with timed("trainable.read_data"):
                dataset = trial_dataset(trial)
            result = run_trial(trial, Path(output), report, dataset=dataset, resume_from=resume_from)
            seconds = event["compute_seconds"] = result.costs["train_seconds"] + result.costs["eval_seconds"]
            final = {**result.metrics, **result.costs, "compute_seconds": seconds, FINAL: 1, **node}
            with timed("trainable.report", final=True):
                tune.report(final, checkpoint=tune.Checkpoint.from_directory(output))
