"""One trial, free of Ray: fine-tune one configuration, evaluate, report, save what was trained.

`run_trial` reads as a recipe: `setup` (seed, device, precision), the data, the model, `train` (the parts are in
`sweeper.recipe`), then `finish` (the best evaluation's metrics, the costs, the artifacts). A rolling trial
(`data.split.folds` > 1) hands its prepared data to `sweeper.rolling`, which trains once per window with the same
parts. Sweeps, `sweeper train`, `reproduce` and the tests all call `run_trial`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sweeper.artifacts import write_trial
from sweeper.config import TrialConfig
from sweeper.costs import peak_memory_mb, reset_peak_memory
from sweeper.data.records import Dataset
from sweeper.machine import machine_tags
from sweeper.precision import allow_tf32, check_precision, with_precision
from sweeper.quantization import check_quantization
from sweeper.recipe import (Built, Prepared, Progress, Reporter, TrialResult, best_metrics, build_model, prepare_data,
                            seed_everything, train, trial_costs)
from sweeper.rolling import run_rolling
from sweeper.timings import timed
from sweeper.tracking.schema import Tag


def run_trial(config: TrialConfig, output_dir: Path | None = None, report: Reporter | None = None,
              dataset: Dataset | None = None, resume_from: Path | None = None) -> TrialResult:
    """Train `config`, calling `report` after each evaluation; save artifacts to `output_dir` if given.

    `resume_from` is a checkpoint folder an earlier `Evaluation.save` wrote: training goes on from the step after
    it, with the weights, optimiser, schedule, history and random states it held.
    """
    config, device, start_rss = setup(config)
    with timed("trial.prepare"):
        data = prepare_data(config, dataset, device)
    if data.windows:
        return run_rolling(config, data, device, output_dir, report, resume_from)
    built = build_model(config, data, device, start_rss)
    tags = {Tag.PRECISION: config.precision, Tag.MEMORY_PLAN: built.memory_plan, Tag.ENCODING_KEY: data.encoding_key,
            Tag.FROZEN_CACHE: built.cache.note, **machine_tags()}
    progress = train(built, data, config, device, report, tags, resume_from)
    return finish(config, data, built, progress, device, output_dir, tags)


def setup(config: TrialConfig) -> tuple[TrialConfig, torch.device, int]:
    """Seed, pick the device, resolve and check the precision and quantization for it; the config as it runs, the
    device, and the process's resident set at the start (the base of a CPU's peak memory; 0 on a GPU)."""
    seed_everything(config.seed, config.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    config = with_precision(config, device)  # `auto` resolved: trained, saved and logged at what it ran
    check_precision(config.precision, device.type)
    check_quantization(config.quantization, device.type)
    allow_tf32(device)
    reset_peak_memory(device)  # a reused worker's earlier trials do not count
    return config, device, int(peak_memory_mb(device) * 2**20) if device.type == "cpu" else 0


def finish(config: TrialConfig, data: Prepared, built: Built, progress: Progress, device: torch.device,
           output_dir: Path | None, tags: dict[str, str]) -> TrialResult:
    """The best evaluation's metrics with their intervals (and the test split's), the costs; the trial folder
    written to `output_dir` if given."""
    metrics = best_metrics(built.model, data, config, device, progress)
    metrics |= data.task.intervals(data.valid, progress.best_predictions)  # auc_ci_low, auc_ci_high, ...
    if data.test:
        metrics |= data.task.test_metrics(built.model, data.test, device, progress.best or {})
    costs = trial_costs(built, [progress], len(data.train), config, device)
    if output_dir is not None:
        summary = {"metrics": metrics, "costs": costs, "history": progress.history, "data_digest": data.data_digest}
        with timed("trial.artifacts"):
            write_trial(output_dir, built.model, config, summary, data.task, data.valid, progress.best_predictions)
    return TrialResult(metrics, costs, progress.history, output_dir, tags)
