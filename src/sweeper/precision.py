"""Training at GPU precision and within memory: autocast, fp16's gradient scaler, TF32, gradient checkpointing and
gradient accumulation over micro-batches.

The recipe (`trial.py`) runs one batch's forward and backward passes with `accumulate` and the update with
`optimizer_step`; the tasks evaluate, generate and predict inside the same `autocast`. `grad_accum` splits each batch of
`batch_size` into micro-batches and weighs each micro-batch's loss by its share of what the whole batch's loss
averages over (commits, class weights or message tokens), so the update is the whole batch's, with a micro-batch's
memory. Usage::

    check_precision(config.precision, device.type)   # fp16 on a CPU: a SweeperError before anything runs
    scaler = gradient_scaler(config, device)           # fp16: scales the loss so small gradients survive
    loss, _ = accumulate(model, task, items, config, device, scaler)
    optimizer_step(optimizer, schedule, parameters, config.max_grad_norm, scaler)
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, ContextManager

import torch

from sweeper.data.batching import IGNORED_LABEL
from sweeper.errors import MethodError, SweeperError

if TYPE_CHECKING:
    from sweeper.config import TrialConfig
    from sweeper.data.encoding import EncodedCommit
    from sweeper.methods import TrainableModel
    from sweeper.tasks import Task

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # fp32: no autocast


def precision_problem(precision: str, device_type: str) -> str | None:
    """Why `precision` cannot train on a `device_type` device (`cpu`, `cuda`); None when it can.

        >>> precision_problem("fp16", "cpu")
        'fp16 needs a GPU (its gradient scaler and float16 kernels are CUDA only)'
        >>> precision_problem("bf16", "cpu") is None
        True
    """
    if precision == "fp16" and device_type != "cuda":
        return "fp16 needs a GPU (its gradient scaler and float16 kernels are CUDA only)"
    if precision == "bf16" and device_type == "cuda" and not torch.cuda.is_bf16_supported():
        return "this GPU has no bfloat16 support"
    return None


def check_precision(precision: str, device_type: str) -> None:
    """A one-line `SweeperError` naming the field and the fix when `precision` cannot run here."""
    problem = precision_problem(precision, device_type)
    if problem:
        raise SweeperError(f"field 'precision': {problem}, and this trial runs on {device_type}: "
                           "use precision: bf16 (CPU and GPU) or fp32")


def autocast(config: TrialConfig, device: torch.device) -> ContextManager[Any]:
    """The trial's autocast (bf16 or fp16) for forward passes, training and evaluation alike; fp32: none."""
    dtype = AUTOCAST_DTYPES.get(config.precision)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def allow_tf32(device: torch.device) -> None:
    """TF32 matmuls and convolutions on GPUs that have them (Ampere and later): fp32 weights, faster products."""
    if device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def enable_gradient_checkpointing(model: TrainableModel) -> None:
    """Recompute each layer's activations in the backward pass instead of keeping them (non-reentrant, so frozen
    inputs need no gradient and dropout masks repeat); `MethodError` for a model class without it."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(base, "supports_gradient_checkpointing", False):
        raise MethodError(f"{type(base).__name__} does not support gradient checkpointing: "
                          "set gradient_checkpointing: false")
    base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def gradient_scaler(config: TrialConfig, device: torch.device) -> torch.amp.GradScaler:
    """fp16's loss scaler (small float16 gradients would underflow to 0); disabled, a pass-through, otherwise."""
    return torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")


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
