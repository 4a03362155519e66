"""The parts of a trial's recipe, shared by a single trial (`sweeper.trial`) and a rolling one (`sweeper.rolling`).

Data (`prepare_data`), model (`build_model`), training (`train`: the steps of the training plan, with an evaluation
wherever the plan puts one, each epoch's end and every `eval_every_steps`, and early stopping) and the best
evaluation's weights and metrics (`best_metrics`). What differs between defect prediction and message generation
comes from `sweeper.tasks`; what is saved, and under which names, from `sweeper.artifacts`.
"""

from __future__ import annotations

import functools
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase, get_linear_schedule_with_warmup

from sweeper.artifacts import MODEL_DIR, load_checkpoint, load_trained_model, read_config, save_checkpoint
from sweeper.backbone import load_tokenizer
from sweeper.cache.encoded import encoded_splits
from sweeper.cache.frozen import CacheUse, frozen_prefix, use_frozen_cache
from sweeper.config import TrialConfig
from sweeper.costs import cost_figures, training_tokens
from sweeper.data.batching import batch_indices
from sweeper.data.encoding import EncodedCommit
from sweeper.data.records import Dataset
from sweeper.data.split import Window, rolling_windows, trial_splits
from sweeper.direction import Direction
from sweeper.errors import SweeperError
from sweeper.memory import MemoryEstimate, check_fits, estimate_memory
from sweeper.methods import TrainableModel, apply_method, count_parameters
from sweeper.precision import enable_gradient_checkpointing, gradient_scaler, hold_frozen_weights
from sweeper.step import accumulate, optimizer_step
from sweeper.tasks import Prediction, Task, task_for
from sweeper.timings import timed
from sweeper.tracking.schema import EPOCH, TRAIN_LOSS


class TrialFailed(SweeperError):
    """Training broke down (a NaN loss, say): the trial ends as failed, the sweep goes on."""


@dataclass(frozen=True)
class Evaluation:
    """One evaluation during training; `save(folder)` writes a checkpoint to resume the trial from this point.

    `last` says that no evaluation follows (the plan's last step, or early stopping); `tags` are the trial's notes
    for its run (the encoding cache key, the frozen-prefix cache).
    """

    index: int
    epoch: float
    step: int
    metrics: dict[str, float]
    seconds: float  # training and evaluation time so far
    save: Callable[[Path], None]
    last: bool = False
    tags: dict[str, str] = field(default_factory=dict)


Reporter = Callable[[Evaluation], None]


@dataclass
class TrialResult:
    """The best evaluation's metrics, the cost figures and every evaluation's metrics."""

    metrics: dict[str, float]
    costs: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    output_dir: Path | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class Prepared:
    """Encoded splits, ready to train on; the task is prepared for them. A rolling trial (`data.split.folds`) has
    its `windows`: positions in `train + valid`, each window's training commits and its validation commits."""

    train: list[EncodedCommit]
    valid: list[EncodedCommit]
    test: list[EncodedCommit]
    task: Task
    data_digest: str
    encoding_key: str = ""  # names the encoded splits in the node's cache (`sweeper.cache.encoded`)
    tokenizer: PreTrainedTokenizerBase | None = None
    windows: list[Window] = field(default_factory=list)


@dataclass
class Built:
    """A trial's model on its device, with the frozen-prefix cache in use where it applies, and its sizes."""

    model: TrainableModel
    cache: CacheUse
    trainable: int
    total: int
    backbone_params: int
    encoder_decoder: bool
    memory: MemoryEstimate  # the peak estimated before training (`sweeper.memory`)
    memory_plan: str  # the estimate against the device's room, for the run's `sweeper.memory_plan` tag


@dataclass(frozen=True)
class Step:
    """One optimiser step of the training plan: its number (from 1), its epoch (from 0), the indices of its
    batch, and whether an evaluation follows it (at `epoch_end`, or mid-epoch every `eval_every_steps`)."""

    number: int
    epoch: int
    batch: list[int]
    evaluate: bool
    epoch_end: bool


def training_plan(items: list[EncodedCommit], config: TrialConfig) -> Iterator[Step]:
    """Every step of the trial, in order. Each epoch's batch order depends only on the seed and the epoch, so a
    resumed trial walks the same plan and skips the steps it had done."""
    number = 0
    for epoch in range(config.epochs):
        batches = batch_indices(items, config.batch_size, seed=config.seed + epoch, pad_to=config.data.pad_to)
        for position, batch in enumerate(batches, start=1):
            number += 1
            epoch_end = position == len(batches)
            every = config.eval_every_steps
            yield Step(number, epoch, batch, epoch_end or bool(every and number % every == 0), epoch_end)


@dataclass
class Progress:
    """Where training stands and the best evaluation so far; saved with each checkpoint."""

    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, float] | None = None
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    best_predictions: list[Prediction] = field(default_factory=list)
    evaluations_without_gain: int = 0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    samples_seen: int = 0
    tokens_seen: int = 0  # token positions trained on, padding included (`costs.training_tokens`)
    step: int = 0
    running_loss: float = 0.0
    running_batches: int = 0

    def record(self, metrics: dict[str, float], predictions: list[Prediction], model: TrainableModel,
               config: TrialConfig, rank: bool = True) -> None:
        """Add an evaluation to the history; keep its weights and predictions if it is the best so far (every
        evaluation is, when `rank` is False: a metric that cannot rank them keeps the latest)."""
        self.history.append(metrics)
        self.running_loss, self.running_batches = 0.0, 0
        if self.best is None or not rank or Direction(config.mode).better(metrics[config.metric], than=self.best[config.metric]):
            self.best, self.best_predictions, self.evaluations_without_gain = metrics, predictions, 0
            self.best_state = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
        else:
            self.evaluations_without_gain += 1

    def stalled(self, patience: int | None) -> bool:
        """Early stopping: `patience` evaluations in a row without a gain."""
        return patience is not None and self.evaluations_without_gain >= patience


def build_model(config: TrialConfig, data: Prepared, device: torch.device, start_rss: int = 0) -> Built:
    """The backbone with the trial's method on `device`, its frozen prefix served from the cache where it applies;
    its peak memory estimated first (`start_rss`: the process's resident set at the trial's start, on a CPU) and a
    `MemoryPlanError` if it cannot fit."""
    with timed("trial.model"):
        backbone = data.task.load_model(config.backbone)
        _, backbone_size = count_parameters(backbone)
        frozen = frozen_prefix(backbone, config)
        model = apply_method(backbone, config)
        estimate = estimate_memory(model, config, device, start_rss)
        plan = check_fits(estimate, device, config)  # cannot fit: fails now, with the figures, not out of memory later
        hold_frozen_weights(model, config)
        model = model.to(device) if config.quantization == "none" else model  # quantized: placed as loaded
        if config.gradient_checkpointing:
            enable_gradient_checkpointing(model)
    with timed("trial.frozen_cache"):
        cache = use_frozen_cache(model, frozen, config, [data.train, data.valid, data.test], data.encoding_key,
                                 data.task.pad_id, device)
    trainable, total = count_parameters(model)
    return Built(model, cache, trainable, total, backbone_size,
                 bool(getattr(backbone.config, "is_encoder_decoder", False)), estimate, plan)


def train(built: Built, data: Prepared, config: TrialConfig, device: torch.device, report: Reporter | None = None,
          tags: dict[str, str] | None = None, resume_from: Path | None = None, rank: bool = True) -> Progress:
    """Train on `data.train` by the plan, evaluating on `data.valid` where it says, reporting each evaluation;
    the progress holds the best evaluation (by `config.metric`; the latest when `rank` is False)."""
    model = built.model
    steps_per_epoch = math.ceil(len(data.train) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    schedule = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)
    scaler = gradient_scaler(config, device)
    progress = Progress()
    if resume_from is not None:
        progress = load_checkpoint(resume_from, model, optimizer, schedule) or progress

    with out_of_memory_as_failure(config):
        model.train()
        for step in training_plan(data.train, config):
            if step.number <= progress.step:  # done before the checkpoint this trial resumed from
                continue
            started = time.perf_counter()
            loss, batches = accumulate(model, data.task, [data.train[i] for i in step.batch], config, device, scaler)
            if not math.isfinite(loss):
                raise TrialFailed(f"loss is {loss} at step {step.number} (lr {config.lr} may be too high)")
            optimizer_step(optimizer, schedule, parameters, config.max_grad_norm, scaler)
            progress.train_seconds += time.perf_counter() - started
            progress.step = step.number
            progress.samples_seen += len(step.batch)
            progress.tokens_seen += sum(training_tokens(batch, built.encoder_decoder) for batch in batches)
            progress.running_loss += loss
            progress.running_batches += 1
            if not step.evaluate:
                continue
            epoch = float(step.epoch + 1) if step.epoch_end else round(step.number / steps_per_epoch, 4)
            metrics = evaluate(model, data, config, progress, device, epoch, rank)
            if report is not None:
                report(Evaluation(len(progress.history), epoch, step.number, metrics,
                                  progress.train_seconds + progress.eval_seconds,
                                  functools.partial(save_checkpoint, model=model, config=config, progress=progress,
                                                    optimizer=optimizer, schedule=schedule, scaler=data.task.scaler),
                                  last=step.number == total_steps or progress.stalled(config.patience),
                                  tags=tags or {}))
            if progress.stalled(config.patience):
                break
            model.train()
    return progress


def best_metrics(model: TrainableModel, data: Prepared, config: TrialConfig, device: torch.device,
                 progress: Progress) -> dict[str, float]:
    """Put the best evaluation's weights back (eval mode) and return its metrics; generation that was scored only
    between evaluations is scored now on those weights, and its predictions kept."""
    assert progress.best is not None
    restore(model, progress.best_state)
    model.eval()
    metrics = dict(progress.best)
    if not progress.best_predictions:  # generation scored between evaluations only: score the best weights now
        started = time.perf_counter()
        final = data.task.evaluate(model, data.valid, device, score=True)
        progress.eval_seconds += time.perf_counter() - started
        metrics |= final.metrics
        progress.best_predictions = final.predictions
    return metrics


def trial_costs(built: Built, runs: list[Progress], train_samples: int, config: TrialConfig, device: torch.device,
                fill_tokens: int | None = None) -> dict[str, float]:
    """The cost figures of a trial that trained `runs` (one; a rolling trial's windows: summed) with `built`'s
    model; `fill_tokens`, the frozen-prefix cache fill of all of them when not `built`'s alone."""
    return cost_figures(built.model, runs, trainable=built.trainable, total=built.total,
                        backbone_params=built.backbone_params, estimated_bytes=built.memory.total,
                        train_samples=train_samples, batch_size=config.batch_size, grad_accum=config.grad_accum,
                        epochs_run=sum(progress.history[-1][EPOCH] for progress in runs), device=device,
                        cached=built.cache.modules,
                        fill_tokens=built.cache.fill_tokens if fill_tokens is None else fill_tokens)


def evaluate(model: TrainableModel, data: Prepared, config: TrialConfig, progress: Progress, device: torch.device,
             epoch: float, rank: bool = True) -> dict[str, float]:
    """Evaluate on the validation set (generating messages every `generation.every` evaluations) and record it."""
    model.eval()
    started = time.perf_counter()
    every = config.generation.every
    with timed("trial.evaluate"):
        scores = data.task.evaluate(model, data.valid, device,
                                    score=every is not None and (len(progress.history) + 1) % every == 0)
    progress.eval_seconds += time.perf_counter() - started
    metrics = scores.metrics | {TRAIN_LOSS: progress.running_loss / max(progress.running_batches, 1), EPOCH: epoch}
    progress.record(metrics, scores.predictions, model, config, rank)
    return metrics


def prepare_data(config: TrialConfig, dataset: Dataset | None = None, device: torch.device | None = None) -> Prepared:
    """Read (unless given), sample, split and encode the data of `config`; prepare its task for it."""
    dataset, splits = trial_splits(config, dataset)
    tokenizer = load_tokenizer(config.backbone, config.task)
    task = task_for(config)
    task.fit(splits.train)  # the expert features' scaler: from the training split only
    with timed("trial.encode"):
        (train, valid, test), encoding_key = encoded_splits(task, splits, tokenizer, config, dataset.digest)
    if not train or not valid:
        raise SweeperError(f"{config.data.path}: {len(train)} training and {len(valid)} validation commits after "
                           "sampling and splitting: give more data (data.sample) or a larger data.split.valid")
    task.prepare(train, tokenizer, device or torch.device("cpu"))
    folds = config.data.split.folds
    windows = rolling_windows(splits, folds) if folds > 1 else []
    return Prepared(train, valid, test, task, dataset.digest, encoding_key, tokenizer, windows)


def predict_saved(folder: Path) -> list[Prediction]:
    """Reload a trial folder's config and trained weights, and predict its validation set again."""
    config = read_config(folder)
    seed_everything(config.seed, config.threads)
    device = torch.device("cpu")
    data = prepare_data(config, device=device)
    backbone = data.task.load_model(config.backbone)
    frozen = frozen_prefix(backbone, config)  # of the backbone before the method, as in training
    model = load_trained_model(config, folder / MODEL_DIR, backbone)
    hold_frozen_weights(model, config)  # as in training (the same numbers either way)
    use_frozen_cache(model, frozen, config, [data.train, data.valid, data.test], data.encoding_key, data.task.pad_id,
                     device, check_trained=False)  # as in training, so the predictions repeat exactly
    return data.task.evaluate(model, data.valid, device, score=True).predictions


@contextmanager
def out_of_memory_as_failure(config: TrialConfig) -> Iterator[None]:
    """GPU or CPU out-of-memory errors become a TrialFailed that says what to lower."""
    advice = f"out of memory at batch_size {config.batch_size}, max_length {config.data.max_length}: lower one of them"
    try:
        yield
    except (torch.OutOfMemoryError, MemoryError) as error:
        raise TrialFailed(advice) from error
    except RuntimeError as error:
        if "can't allocate memory" not in str(error):  # PyTorch's CPU allocator
            raise
        raise TrialFailed(advice) from error


def restore(model: TrainableModel, state: dict[str, torch.Tensor]) -> None:
    """Copy saved trainable weights back into the model."""
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            parameters[name].copy_(value)


def seed_everything(seed: int, threads: int) -> None:
    """Same seed and thread count, same numbers: results repeat exactly on a CPU (and on a GPU, where cuBLAS
    gets the fixed workspace its deterministic mode needs, unless the environment sets one)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
