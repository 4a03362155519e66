"""One trial, free of Ray: fine-tune one configuration, evaluate, report, save what was trained.

The recipe reads top to bottom: data, model, optimiser, then epochs of training with an
evaluation after each (and every `eval_every_steps`), early stopping, and the best evaluation's
weights and predictions saved at the end. Sweeps, `sweeper train`, `reproduce` and the tests
all call `run_trial`.
"""

from __future__ import annotations

import json
import math
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

from sweeper.backbone import load_classifier, load_tokenizer
from sweeper.config import TrialConfig
from sweeper.data.batching import batch_indices, collate, iterate_batches
from sweeper.data.encoding import EncodedCommit, encode_commits
from sweeper.data.records import Dataset, read_records, sample_records
from sweeper.data.split import split_records
from sweeper.errors import SweeperError
from sweeper.methods import apply_method, count_parameters, load_trained, save_trained
from sweeper.metrics import classification_metrics


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


@dataclass
class TrialResult:
    """The best evaluation's metrics, the cost figures and every evaluation's metrics."""

    metrics: dict[str, float]
    costs: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    output_dir: Path | None = None


@dataclass
class Prepared:
    """Encoded splits and the tokenizer's pad id, ready to train on."""

    train: list[EncodedCommit]
    valid: list[EncodedCommit]
    test: list[EncodedCommit]
    pad_id: int
    data_digest: str


@dataclass
class Progress:
    """Where training stands; saved with each checkpoint so a trial whose worker died can resume."""

    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, float] | None = None
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    best_scores: list[float] = field(default_factory=list)
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
    data = prepare_data(config, dataset)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = apply_method(load_classifier(config.backbone, num_labels=2), config).to(device)
    trainable, total = count_parameters(model)

    steps_per_epoch = math.ceil(len(data.train) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    schedule = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)
    loss_fn = torch.nn.CrossEntropyLoss(weight=class_weights(data.train).to(device) if config.class_weighting else None)
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
        scores, eval_loss = predict(model, data.valid, config.eval_batch_size, data.pad_id, device, config.data.pad_to)
        progress.eval_seconds += time.perf_counter() - started
        metrics = classification_metrics([item.label for item in data.valid], scores)
        metrics |= {"eval_loss": eval_loss, "train_loss": progress.running_loss / max(progress.running_batches, 1),
                    "epoch": epoch}
        progress.running_loss, progress.running_batches = 0.0, 0
        progress.history.append(metrics)
        if progress.best is None or improved(metrics[config.metric], progress.best[config.metric], config.mode):
            progress.best, progress.best_scores, progress.evaluations_without_gain = metrics, scores, 0
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
            for batch in iterate_batches(data.train, config.batch_size, data.pad_id, seed=config.seed + epoch,
                                         pad_to=config.data.pad_to):
                started = time.perf_counter()
                batch = {key: value.to(device) for key, value in batch.items()}
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                loss = loss_fn(logits, batch["labels"])
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
                progress.samples_seen += len(batch["labels"])
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
    metrics = dict(best)
    if data.test:
        test_scores, _ = predict(model, data.test, config.eval_batch_size, data.pad_id, device, config.data.pad_to)
        test_labels = [item.label for item in data.test]
        test = classification_metrics(test_labels, test_scores)
        at_valid_threshold = classification_metrics(test_labels, test_scores, best["max_f1_threshold"])
        metrics |= {f"test_{name}": value for name, value in test.items()}
        metrics["test_f1_at_valid_threshold"] = at_valid_threshold["f1"]
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
        write_artifacts(model, config, result, data.valid, progress.best_scores, data.data_digest, output_dir)
    return result


def load_state(path: Path, model: PreTrainedModel, optimizer: torch.optim.Optimizer,
               schedule: torch.optim.lr_scheduler.LRScheduler) -> Progress:
    """Put a checkpoint's weights, optimiser and schedule back; return its progress."""
    state = torch.load(path, weights_only=False)
    restore(model, state["weights"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    return state["progress"]


def prepare_data(config: TrialConfig, dataset: Dataset | None = None) -> Prepared:
    """Read (unless given), sample, split and encode the data of `config`."""
    dataset = dataset or read_records(config.data.path, config.task, config.data.skip_bad)
    records = sample_records(dataset.records, config.data.sample, config.seed)
    splits = split_records(records, config.data.split, config.seed)
    tokenizer = load_tokenizer(config.backbone)
    encode = lambda part: encode_commits(part, tokenizer, config.data.max_length, config.data.message_tokens)  # noqa: E731
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return Prepared(encode(splits.train), encode(splits.valid), encode(splits.test), pad_id, dataset.digest)


@torch.no_grad()
def predict(model: PreTrainedModel, items: list[EncodedCommit], batch_size: int, pad_id: int,
            device: torch.device, pad_to: int | None = None) -> tuple[list[float], float]:
    """Defect probability per item (in input order) and the mean cross-entropy; `pad_to` as in training."""
    scores = [0.0] * len(items)
    total_loss = 0.0
    for indices in batch_indices(items, batch_size, seed=None, pad_to=pad_to):
        batch = {key: value.to(device) for key, value in collate([items[i] for i in indices], pad_id, pad_to).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        total_loss += torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="sum").item()
        for index, score in zip(indices, torch.softmax(logits, dim=-1)[:, 1].tolist()):
            scores[index] = score
    return scores, total_loss / max(len(items), 1)


def write_artifacts(model: PreTrainedModel, config: TrialConfig, result: TrialResult, valid: list[EncodedCommit],
                    scores: list[float], data_digest: str, output_dir: Path) -> None:
    """What was trained, the resolved config, the metrics and the validation predictions."""
    output_dir.mkdir(parents=True, exist_ok=True)
    save_trained(model, config, output_dir / "model")
    (output_dir / "config.json").write_text(json.dumps(config.model_dump(mode="json"), indent=2))
    summary = {"metrics": result.metrics, "costs": result.costs, "history": result.history, "data_digest": data_digest}
    (output_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    lines = ["id,label,score"] + [f"{item.id},{item.label},{score!r}" for item, score in zip(valid, scores)]
    (output_dir / "predictions.csv").write_text("\n".join(lines) + "\n")


def predict_saved(output_dir: Path) -> list[tuple[str, int, float]]:
    """Reload a trial's artifacts (config and trained weights) and predict its validation set again."""
    config = TrialConfig.model_validate_json((output_dir / "config.json").read_text())
    seed_everything(config.seed, config.threads)
    data = prepare_data(config)
    model = load_trained(load_classifier(config.backbone, num_labels=2), config, output_dir / "model")
    model.eval()
    scores, _ = predict(model, data.valid, config.eval_batch_size, data.pad_id, torch.device("cpu"), config.data.pad_to)
    return [(item.id, item.label, score) for item, score in zip(data.valid, scores)]


def read_predictions(output_dir: Path) -> list[tuple[str, int, float]]:
    """The validation predictions a trial saved."""
    rows = (output_dir / "predictions.csv").read_text().splitlines()[1:]
    return [(id_, int(label), float(score)) for id_, label, score in (row.split(",") for row in rows)]


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


def class_weights(items: list[EncodedCommit]) -> torch.Tensor:
    """Inverse class frequency, normalised so a balanced set gets weights of 1."""
    counts = np.bincount([item.label for item in items], minlength=2).astype(np.float64)
    return torch.tensor(len(items) / (2 * np.maximum(counts, 1)), dtype=torch.float32)


def restore(model: PreTrainedModel, state: dict[str, torch.Tensor]) -> None:
    """Copy saved trainable weights back into the model."""
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            parameters[name].copy_(value)


def seed_everything(seed: int, threads: int) -> None:
    """Same seed and thread count, same numbers: results repeat exactly on a CPU."""
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
