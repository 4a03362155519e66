"""One trial, free of Ray: fine-tune one configuration, evaluate, report, save what was trained.

The recipe reads top to bottom: data, model, optimiser, then epochs of training with an
evaluation after each (and every `eval_every_steps`), early stopping, and the best evaluation's
weights and predictions saved at the end. What differs between defect prediction and message
generation (model, encoding, loss, metrics, predictions) comes from `sweeper.tasks`. Sweeps,
`sweeper train`, `reproduce` and the tests all call `run_trial`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedModel, get_linear_schedule_with_warmup

from sweeper.backbone import load_tokenizer
from sweeper.config import TrialConfig
from sweeper.data.batching import batch_indices, collate
from sweeper.data.encoding import EncodedCommit
from sweeper.data.records import Dataset, read_records, sample_records
from sweeper.data.split import split_records
from sweeper.errors import SweeperError
from sweeper.methods import apply_method, count_parameters, load_trained, save_trained
from sweeper.tasks import Prediction, Task, task_for


class TrialFailed(SweeperError):
    """Training broke down (a NaN loss, say): the trial ends as failed, the sweep goes on."""


@dataclass(frozen=True)
class Evaluation:
    """One evaluation during training; `save(dir)` writes the weights trained so far."""

    index: int
    epoch: float
    step: int
    metrics: dict[str, float]
    seconds: float  # training and evaluation time so far
    save: Callable[[Path], None]


Reporter = Callable[[Evaluation], None]
STATE_FILE = "training_state.pt"
PREDICTIONS_FILE = "predictions.csv"


@dataclass
class TrialResult:
    """The best evaluation's metrics, the cost figures and every evaluation's metrics."""

    metrics: dict[str, float]
    costs: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    output_dir: Path | None = None


@dataclass
class Prepared:
    """Encoded splits, ready to train on; the task is prepared for them."""

    train: list[EncodedCommit]
    valid: list[EncodedCommit]
    test: list[EncodedCommit]
    task: Task
    data_digest: str


@dataclass
class Progress:
    """Where training stands; saved with each checkpoint so a trial whose worker died can resume."""

    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, float] | None = None
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    best_predictions: list[Prediction] = field(default_factory=list)
    evaluations_without_gain: int = 0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    samples_seen: int = 0
    step: int = 0
    epochs_done: int = 0
    running_loss: float = 0.0
    running_batches: int = 0


def run_trial(config: TrialConfig, output_dir: Path | None = None, report: Reporter | None = None,
              dataset: Dataset | None = None, resume_from: Path | None = None) -> TrialResult:
    """Train `config`, calling `report` after each evaluation; save artifacts to `output_dir` if given.

    `resume_from` is a checkpoint folder an earlier `Evaluation.save` wrote: training goes on from the
    start of the epoch after it, with the weights, optimiser, schedule and history it held.
    """
    seed_everything(config.seed, config.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)  # a reused worker's earlier trials do not count
    data = prepare_data(config, dataset, device)
    task = data.task
    model = apply_method(task.load_model(config.backbone), config).to(device)
    trainable, total = count_parameters(model)

    steps_per_epoch = math.ceil(len(data.train) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    schedule = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)
    progress = Progress()
    if resume_from is not None and (resume_from / STATE_FILE).is_file():
        progress = load_state(resume_from / STATE_FILE, model, optimizer, schedule)

    def save_checkpoint(folder: Path) -> None:
        save_trained(model, config, folder / "model")
        torch.save({"progress": progress, "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                    "weights": {name: p.detach().cpu() for name, p in model.named_parameters() if p.requires_grad}},
                   folder / STATE_FILE)

    def evaluate_now(epoch: float) -> bool:
        """Evaluate, remember the best, report; True when early stopping says stop."""
        started = time.perf_counter()
        every = config.generation.every
        evaluated = task.evaluate(model, data.valid, device, score=every is not None and
                                  (len(progress.history) + 1) % every == 0)
        progress.eval_seconds += time.perf_counter() - started
        metrics = evaluated.metrics | {"train_loss": progress.running_loss / max(progress.running_batches, 1),
                                       "epoch": epoch}
        progress.running_loss, progress.running_batches = 0.0, 0
        progress.history.append(metrics)
        if progress.best is None or improved(metrics[config.metric], progress.best[config.metric], config.mode):
            progress.best, progress.best_predictions, progress.evaluations_without_gain = \
                metrics, evaluated.predictions, 0
            progress.best_state = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
        else:
            progress.evaluations_without_gain += 1
        if report is not None:
            report(Evaluation(len(progress.history), epoch, progress.step, metrics,
                              progress.train_seconds + progress.eval_seconds, save_checkpoint))
        return config.patience is not None and progress.evaluations_without_gain >= config.patience

    stop = False
    with out_of_memory_as_failure(config):
        for epoch in range(progress.epochs_done, config.epochs):
            model.train()
            for indices in batch_indices(data.train, config.batch_size, seed=config.seed + epoch,
                                         pad_to=config.data.pad_to):
                started = time.perf_counter()
                loss = task.loss(model, task.batch(model, [data.train[index] for index in indices], device))
                if not torch.isfinite(loss):
                    raise TrialFailed(f"loss is {loss.item()} at step {progress.step + 1} "
                                      f"(lr {config.lr} may be too high)")
                loss.backward()
                torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                progress.train_seconds += time.perf_counter() - started
                progress.step += 1
                progress.samples_seen += len(indices)
                progress.running_loss += loss.item()
                progress.running_batches += 1
                if config.eval_every_steps and progress.step % config.eval_every_steps == 0 and \
                        progress.step % steps_per_epoch:
                    model.eval()
                    stop = evaluate_now(round(progress.step / steps_per_epoch, 4))
                    model.train()
                    if stop:
                        break
            if stop:
                break
            progress.epochs_done = epoch + 1
            model.eval()
            if evaluate_now(float(epoch + 1)):
                break

    best = progress.best
    assert best is not None
    restore(model, progress.best_state)
    model.eval()
    metrics = dict(best)
    if not progress.best_predictions:  # generation scored between evaluations only: score the best weights now
        started = time.perf_counter()
        final = task.evaluate(model, data.valid, device, score=True)
        progress.eval_seconds += time.perf_counter() - started
        metrics |= final.metrics
        progress.best_predictions = final.predictions
    if data.test:
        metrics |= task.test_metrics(model, data.test, device, best)
    costs = {
        "trainable_params": float(trainable),
        "total_params": float(total),
        "trainable_percent": 100.0 * trainable / total,
        "train_seconds": progress.train_seconds,
        "eval_seconds": progress.eval_seconds,
        "samples_per_second": progress.samples_seen / progress.train_seconds if progress.train_seconds else 0.0,
        "peak_memory_mb": peak_memory_mb(device),
        "train_samples": float(len(data.train)),
        "epochs_run": progress.history[-1]["epoch"],
    }
    result = TrialResult(metrics, costs, progress.history, output_dir)
    if output_dir is not None:
        write_artifacts(model, config, result, data, progress.best_predictions, output_dir)
    return result


def load_state(path: Path, model: PreTrainedModel, optimizer: torch.optim.Optimizer,
               schedule: torch.optim.lr_scheduler.LRScheduler) -> Progress:
    """Put a checkpoint's weights, optimiser and schedule back; return its progress."""
    state = torch.load(path, weights_only=False)
    restore(model, state["weights"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    return state["progress"]


def prepare_data(config: TrialConfig, dataset: Dataset | None = None, device: torch.device | None = None) -> Prepared:
    """Read (unless given), sample, split and encode the data of `config`; prepare its task for it."""
    dataset = dataset or read_records(config.data.path, config.task, config.data.skip_bad)
    records = sample_records(dataset.records, config.data.sample, config.seed)
    splits = split_records(records, config.data.split, config.seed)
    tokenizer = load_tokenizer(config.backbone, config.task)
    task = task_for(config)
    train, valid, test = (task.encode(part, tokenizer) for part in (splits.train, splits.valid, splits.test))
    if not train or not valid:
        raise SweeperError(f"{config.data.path}: {len(train)} training and {len(valid)} validation commits after "
                           "sampling and splitting: give more data (data.sample) or a larger data.split.valid")
    task.prepare(train, tokenizer, device or torch.device("cpu"))
    return Prepared(train, valid, test, task, dataset.digest)


def write_artifacts(model: PreTrainedModel, config: TrialConfig, result: TrialResult, data: Prepared,
                    predictions: list[Prediction], output_dir: Path) -> None:
    """What was trained, the resolved config, the metrics and the validation predictions."""
    output_dir.mkdir(parents=True, exist_ok=True)
    save_trained(model, config, output_dir / "model")
    (output_dir / "config.json").write_text(json.dumps(config.model_dump(mode="json"), indent=2))
    summary = {"metrics": result.metrics, "costs": result.costs, "history": result.history,
               "data_digest": data.data_digest}
    (output_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    data.task.write_predictions(output_dir / PREDICTIONS_FILE, data.valid, predictions)


def predict_saved(output_dir: Path) -> list[Prediction]:
    """Reload a trial's artifacts (config and trained weights) and predict its validation set again."""
    config = TrialConfig.model_validate_json((output_dir / "config.json").read_text())
    seed_everything(config.seed, config.threads)
    device = torch.device("cpu")
    data = prepare_data(config, device=device)
    model = load_trained(data.task.load_model(config.backbone), config, output_dir / "model")
    return data.task.evaluate(model, data.valid, device, score=True).predictions


def read_predictions(output_dir: Path) -> list[Prediction]:
    """The validation predictions a trial saved, in order: defect probabilities or generated messages."""
    with (output_dir / PREDICTIONS_FILE).open(newline="", encoding="utf-8") as handle:
        header, *rows = csv.reader(handle)
    return [float(row[-1]) if header[-1] == "score" else row[-1] for row in rows]


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


def improved(value: float, best: float, mode: str) -> bool:
    """Whether `value` beats `best` in the direction of `mode`."""
    return value > best if mode == "max" else value < best


def restore(model: PreTrainedModel, state: dict[str, torch.Tensor]) -> None:
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


def peak_memory_mb(device: torch.device) -> float:
    """GPU max allocated on a GPU, else the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
