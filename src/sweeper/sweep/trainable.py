"""The Ray Tune trainable: a thin wrapper that runs `run_trial` inside a Ray worker.

Each evaluation is reported to Tune with a checkpoint (the weights trained so far and the training
state, so a trial whose worker dies resumes from it on another node); the last
report carries the best evaluation's metrics, the cost figures and the trial's artifacts, flagged
`final` so the pruner does not count it as another step.

Failures are of two kinds. What the trial raises itself (a `SweeperError`: bad data, a spec the backbone cannot
take, a NaN loss, out of memory at this size) would come back on every retry, so the trainable ends the trial at
once: its final result carries the reason (`failure`), a NaN metric (Optuna is told FAIL) and the traceback as a
checkpoint file, and Ray sees a trial that ended normally, so it does not retry it. Anything else (a lost worker
or node, a broken connection) escapes to Ray, which retries the trial from its last checkpoint
(`FailureConfig(max_failures)` in `driver.py`).

Fault-injection tests stop a trial between two evaluations with `hold.py` (off unless `$SWEEPER_HOLD` is set).

Ray reuses a worker process for trial after trial (`reuse_actors`), so what every trial of a sweep reads
the same way, its data file, is read once per worker and kept (`trial_dataset`).
"""

from __future__ import annotations

import functools
import json
import math
import tempfile
import traceback
from pathlib import Path
from typing import Any

import ray
from ray import tune

from sweeper.artifacts import METRICS_FILE, STATE_FILE
from sweeper.config import TrialConfig
from sweeper.data.records import Dataset, read_records
from sweeper.errors import SweeperError
from sweeper.sweep.hold import hold_after_evaluation
from sweeper.timings import timed
from sweeper.tracking.schema import ERROR_FOLDER
from sweeper.recipe import Evaluation
from sweeper.trial import run_trial

# Keys of the results a trial reports to Tune, beside its metrics.
FINAL = "final"  # set on the last result: the trial's best metrics and its costs, not another evaluation
EVALUATION = "evaluation"  # the evaluation's number, from 1: the pruner's step and MLflow's
LAST_EVALUATION = "last_evaluation"  # 1 when no evaluation follows: the pruner leaves the trial to finish
TRIAL_TAGS = "trial_tags"  # the trial's notes for its run's tags (encoding cache key, frozen-prefix cache)
OPTIMIZER_STEP = "optimizer_step"
NODE = "node_id"  # the Ray node the trial ran on
FAILURE = "failure"  # on a final result: why the trial failed deterministically (one line); it is not retried
TRACEBACK_FILE = "traceback.txt"  # in the failed trial's last checkpoint, under ERROR_FOLDER


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
    node = {NODE: ray.get_runtime_context().get_node_id()}
    try:
        train(trial_config(config), node)
    except SweeperError as error:  # deterministic: a retry would fail the same way
        report_failure(error, config["base"]["metric"], node)


def train(trial: TrialConfig, node: dict[str, str]) -> None:
    """Run the trial from its last checkpoint (if Ray restarted it), reporting each evaluation and the end."""

    def report(evaluation: Evaluation) -> None:
        with tempfile.TemporaryDirectory() as folder:
            evaluation.save(Path(folder))
            metrics = {**evaluation.metrics, EVALUATION: evaluation.index, OPTIMIZER_STEP: evaluation.step,
                       LAST_EVALUATION: int(evaluation.last), TRIAL_TAGS: evaluation.tags,
                       "compute_seconds": evaluation.seconds, **node}
            with timed("trainable.report"):  # Tune reports synchronously: the trial waits for the driver here
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        if not evaluation.last:
            hold_after_evaluation(tune.get_context().get_trial_name(), evaluation.index, node[NODE])

    with timed("trainable.run") as event:
        checkpoint = tune.get_checkpoint()
        with tempfile.TemporaryDirectory() as output, tempfile.TemporaryDirectory() as previous:
            resume_from = Path(checkpoint.to_directory(previous)) if checkpoint else None
            if resume_from is not None and is_final(resume_from):  # lost between its final report and its end
                report_final(resume_from, json.loads((resume_from / METRICS_FILE).read_text()), node)
                return
            with timed("trainable.read_data"):
                dataset = trial_dataset(trial)
            result = run_trial(trial, Path(output), report, dataset=dataset, resume_from=resume_from)
            event["compute_seconds"] = result.costs["train_seconds"] + result.costs["eval_seconds"]
            report_final(Path(output), {"metrics": result.metrics, "costs": result.costs}, node)


def is_final(checkpoint: Path) -> bool:
    """Whether a checkpoint is a finished trial's artifacts (its final report) rather than a training state."""
    return (checkpoint / METRICS_FILE).is_file() and not (checkpoint / STATE_FILE).is_file()


def report_final(output: Path, summary: dict[str, Any], node: dict[str, str]) -> None:
    """The last report: the best evaluation's metrics and the costs, with the trial's artifacts as checkpoint."""
    costs = summary["costs"]
    final = {**summary["metrics"], **costs, "compute_seconds": costs["train_seconds"] + costs["eval_seconds"],
             FINAL: 1, **node}
    with timed("trainable.report", final=True):
        tune.report(final, checkpoint=tune.Checkpoint.from_directory(output))


def report_failure(error: SweeperError, metric: str, node: dict[str, str]) -> None:
    """End the trial as failed without a retry: a final result with the reason and a NaN metric (Ray insists on the
    metric; Optuna is told FAIL), and the traceback as the checkpoint (the tracking callback logs it under error/)."""
    with tempfile.TemporaryDirectory() as folder:
        errors = Path(folder) / ERROR_FOLDER
        errors.mkdir()
        (errors / TRACEBACK_FILE).write_text("".join(traceback.format_exception(error)), encoding="utf-8")
        reason = f"{type(error).__name__}: {error}".splitlines()[0]
        tune.report({metric: math.nan, FAILURE: reason, FINAL: 1, **node},
                    checkpoint=tune.Checkpoint.from_directory(folder))
