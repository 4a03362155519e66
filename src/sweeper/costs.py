"""A trial's own costs: the peak memory of that trial alone, and the FLOPs its training took.

Ray runs trial after trial in one worker process, so the process's lifetime maximum resident set (what
`getrusage` gives) belongs to the largest trial it ever ran, not to this one. `reset_peak_memory` at the start of
a trial and `peak_memory_mb` at its end measure the trial alone:

- GPU: `torch.cuda.reset_peak_memory_stats`, then `torch.cuda.max_memory_allocated` (tensors only).
- CPU on Linux: garbage-collect, hand freed heap memory back to the system (glibc's `malloc_trim(0)`), reset the
  kernel's high-water mark of the resident set (`5` into `/proc/self/clear_refs`), then read `VmHWM` from
  `/proc/self/status`: the trial's peak resident set, which includes the process's own base (Python, PyTorch).
- Elsewhere (no `clear_refs`): the process's lifetime maximum resident set, with a warning saying so.

`train_flops` is a cost that does not depend on the hardware: an estimate of the multiply-adds training did,
so trials compare across machines (see its docstring for exactly what it counts, and how a frozen-prefix cache
changes it). Usage::

    reset_peak_memory(device)
    ... train, counting tokens with training_tokens(batch, encoder_decoder) ...
    costs = cost_figures(model, [progress], trainable=..., ...)   # the trial's cost figures, peak and FLOPs included
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import math
import resource
import sys
import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")
RESET_PEAK_RSS = "5"  # clear_refs: reset the peak resident set size (VmHWM) to the current one (Linux >= 4.0)
PEFT_FROZEN_COPY = ".original_module."  # PEFT keeps the head's original beside its trained copy; it never runs


def reset_peak_memory(device: torch.device) -> bool:
    """Start measuring this trial's peak memory; False when only the process's lifetime peak can be read."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    gc.collect()  # an earlier trial's model and optimiser, if cycles still hold them
    trim_heap()
    try:
        CLEAR_REFS.write_text(RESET_PEAK_RSS)
        return True
    except OSError:
        warnings.warn("peak_memory_mb is the process's lifetime peak resident set (cannot reset it without "
                      "/proc/self/clear_refs): with reused workers it includes earlier trials", stacklevel=2)
        return False


def peak_memory_mb(device: torch.device) -> float:
    """The peak since `reset_peak_memory`: GPU memory allocated, or the resident set on CPU, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def trim_heap() -> None:
    """glibc's `malloc_trim(0)`: return freed heap pages to the system, so the resident set the next trial starts
    from holds what is alive, not what earlier trials freed. Nothing on other C libraries."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)
    except OSError:
        pass


def training_tokens(batch: dict[str, torch.Tensor], encoder_decoder: bool) -> int:
    """Token positions one training batch puts through the model, padding included (the model computes over it):
    `input_ids`, plus the target tokens an encoder-decoder's decoder reads (`labels`)."""
    tokens = batch["input_ids"].numel()
    if encoder_decoder and batch["labels"].dim() == 2:
        tokens += batch["labels"].numel()
    return int(tokens)


@dataclass(frozen=True)
class FlopParameters:
    """The parameter counts the FLOPs estimate uses; embedding tables and PEFT's frozen head copy left out."""

    forward: int  # every parameter that multiplies an activation
    backward_inputs: int  # those from the first trained parameter on (in parameter order): gradients flow through them
    trained: int  # those that train: their weight gradients


def flop_parameters(model: nn.Module, skipped: Collection[nn.Module] = ()) -> FlopParameters:
    """Count the parameters of `model` for `train_flops`; those of the `skipped` modules (a frozen prefix served from
    its cache) do not run in a training step and count nowhere."""
    embeddings = {id(p) for module in model.modules() if isinstance(module, nn.Embedding)
                  for p in module.parameters()}
    cached = {id(p) for module in skipped for p in module.parameters()}
    parameters = [(p.numel(), p.requires_grad, id(p) in embeddings) for name, p in model.named_parameters()
                  if PEFT_FROZEN_COPY not in name and id(p) not in cached]
    first_trained = next((index for index, (_, trains, _) in enumerate(parameters) if trains), len(parameters))
    dense = [(size, trains) for size, trains, embedding in parameters if not embedding]
    above = [size for size, _, embedding in parameters[first_trained:] if not embedding]
    return FlopParameters(sum(size for size, _ in dense), sum(above), sum(size for size, trains in dense if trains))


def train_flops(model: nn.Module, tokens: int, cached: Collection[nn.Module] = (), fill_tokens: int = 0) -> float:
    """Training FLOPs, estimated: (2·N + 2·N_above + 2·N_trained) · T, plus 2·N_prefix · T_fill with a cache.

    - forward, 2·N·T: N every parameter except the embedding tables (a lookup multiplies nothing), one
      multiply-add per parameter per token (Kaplan et al. 2020's 2·N per token);
    - backward through the activations, 2·N_above·T: N_above the parameters from the first trained one on, in the
      model's parameter order (its forward order for these backbones): gradients flow down to the lowest trained
      module and no further (all of N for full fine-tuning; nearly all for LoRA or adapters in every layer; less when
      only the top layers train);
    - weight gradients, 2·N_trained·T: N_trained the trained parameters outside the embedding tables.

    T counts the tokens of every training step, padding included (`training_tokens`). Attention's own
    token-by-token products (2·T·width per layer) are left out, as in 2·N·T; an encoder-decoder's encoder and
    decoder are both charged for input and target tokens alike. So full fine-tuning comes to about 6·N·T and a
    frozen backbone with small adapters to about 4·N·T. Evaluation is not counted.

    A trial on the frozen-prefix cache (`cached`: the prefix's modules, `sweeper.cache.frozen`) runs the prefix
    once per commit, not in every step: its parameters (N_prefix) leave N and count once over the T_fill token
    positions of the cache fill (`fill_tokens`), charged to the trial that built the cache; a trial that reuses
    a cache an earlier one filled gives 0 there, as its own work had none.
    """
    counts = flop_parameters(model, cached)
    prefix = flop_parameters(nn.ModuleList(list(cached))).forward if cached else 0
    return 2.0 * (counts.forward + counts.backward_inputs + counts.trained) * tokens + 2.0 * prefix * fill_tokens


class Ran(Protocol):
    """What the cost figures read of one training run (`sweeper.recipe.Progress`)."""

    train_seconds: float
    eval_seconds: float
    samples_seen: int
    tokens_seen: int


def cost_figures(model: nn.Module, runs: Sequence[Ran], *, trainable: int, total: int, backbone_params: int,
                 estimated_bytes: int, train_samples: int, batch_size: int, grad_accum: int, epochs_run: float,
                 device: torch.device, cached: Collection[nn.Module] = (), fill_tokens: int = 0) -> dict[str, float]:
    """A trial's cost figures, as its run logs them: sizes, times, throughput, memory (measured and estimated),
    FLOPs and batch sizes, summed over `runs` (one; a rolling trial's windows)."""
    train_seconds = sum(run.train_seconds for run in runs)
    samples = sum(run.samples_seen for run in runs)
    return {
        "trainable_params": float(trainable),
        "total_params": float(total),
        "trainable_percent": 100.0 * trainable / total,
        "backbone_params": float(backbone_params),
        "train_seconds": train_seconds,
        "eval_seconds": sum(run.eval_seconds for run in runs),
        "samples_per_second": samples / train_seconds if train_seconds else 0.0,
        "peak_memory_mb": peak_memory_mb(device),
        "estimated_memory_mb": estimated_bytes / 2**20,
        "train_flops": train_flops(model, sum(run.tokens_seen for run in runs), cached, fill_tokens),
        "train_samples": float(train_samples),
        "micro_batch_size": float(math.ceil(batch_size / grad_accum)),
        "effective_batch_size": float(batch_size),
        "epochs_run": epochs_run,
    }
