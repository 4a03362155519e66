"""One training step of a trial: forward and backward passes over a batch in micro-batches, then the update.

The recipe (`sweeper.recipe.train`) runs one batch's passes with `accumulate` and the update with `optimizer_step`;
`grad_accum` splits each batch of `batch_size` into micro-batches and weighs each micro-batch's loss by its share of
what the whole batch's loss averages over (commits, class weights or message tokens), so the update is the whole
batch's, with a micro-batch's memory. Usage::

    loss, _ = accumulate(model, task, items, config, device, scaler)
    optimizer_step(optimizer, schedule, parameters, config.max_grad_norm, scaler)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from sweeper.data.batching import IGNORED_LABEL
from sweeper.precision import autocast

if TYPE_CHECKING:
    from sweeper.config import TrialConfig
    from sweeper.data.encoding import EncodedCommit
    from sweeper.methods import TrainableModel
    from sweeper.tasks import Task


def micro_batches(items: list[Any], count: int) -> list[list[Any]]:
    """`items` cut into `count` consecutive parts of nearly equal size (fewer when there are fewer items).

        >>> [len(part) for part in micro_batches(list(range(10)), 3)]
        [4, 3, 3]
    """
    count = max(1, min(count, len(items)))
    size, extra = divmod(len(items), count)
    bounds = [0]
    for index in range(count):
        bounds.append(bounds[-1] + size + (1 if index < extra else 0))
    return [items[start:end] for start, end in zip(bounds, bounds[1:])]


def loss_weight(batch: dict[str, torch.Tensor], task: Task, model: TrainableModel) -> float:
    """What the task's mean loss over `batch` divides by: its commits, weighed by the class weights when the loss
    has them (defect prediction), or its message tokens (generation; a decoder-only model's loss shifts them)."""
    labels = batch["labels"]
    if labels.dim() == 1:
        weights = getattr(getattr(task, "loss_fn", None), "weight", None)
        return float(weights[labels].sum()) if weights is not None else float(len(labels))
    if not model.config.is_encoder_decoder:
        labels = labels[:, 1:]
    return float((labels != IGNORED_LABEL).sum())


def accumulate(model: TrainableModel, task: Task, items: list[EncodedCommit], config: TrialConfig,
               device: torch.device, scaler: torch.amp.GradScaler) -> tuple[float, list[dict[str, torch.Tensor]]]:
    """Forward and backward passes over `items` in `config.grad_accum` micro-batches, gradients summed as one
    batch's would be. Returns the batch's loss (a non-finite loss returns at once, before any backward pass of it)
    and the micro-batches, whose tokens the trial's FLOP count adds up."""
    batches = [task.batch(model, part, device) for part in micro_batches(items, config.grad_accum)]
    weights = [loss_weight(batch, task, model) for batch in batches] if len(batches) > 1 else [1.0]
    total = 0.0
    for batch, weight in zip(batches, weights):
        share = weight / sum(weights)
        with autocast(config, device):
            loss = task.loss(model, batch)
        if not torch.isfinite(loss):
            return loss.item(), batches
        scaler.scale(loss if len(batches) == 1 else loss * share).backward()
        total += loss.item() * share
    return total, batches


def optimizer_step(optimizer: torch.optim.Optimizer, schedule: torch.optim.lr_scheduler.LRScheduler,
                   parameters: list[torch.nn.Parameter], max_grad_norm: float, scaler: torch.amp.GradScaler) -> None:
    """Clip the (unscaled) gradients, step the optimiser (fp16: skipped when they overflowed) and the schedule."""
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    schedule.step()
    optimizer.zero_grad(set_to_none=True)
