"""Memory planning: a trial's peak memory estimated before it trains, checked against the device it runs on.

A configuration that cannot fit (a 7 B model fully fine-tuned on a 24 GB GPU, a batch too large) fails at once
with the estimate and what to change, instead of running out of memory minutes in. The estimate is logged beside the
measured peak (`estimated_memory_mb` beside `peak_memory_mb`), so its error shows in every run. It adds up:

- weights at the precision they are held in: trained ones fp32; frozen matrix weights bf16/fp16 under that autocast
  (`precision.hold_frozen_weights`); a quantized base's packed integer weights at the bytes they take (8-bit: one a
  weight, 4-bit NF4: half); the rest fp32;
- the trained parameters' gradients (fp32) and AdamW's two moments (fp32 each);
- activations kept for the backward pass, from the lowest trained layer up (nothing below it needs a gradient):
  per token and layer `ACTIVATION_WIDTHS` hidden-size vectors, `FFN_WIDTHS` feed-forward-size vectors and one
  attention row per head, at the autocast's width; with gradient checkpointing only each layer's input, plus one
  layer recomputed at a time; a language model's logits over the vocabulary and their gradient (fp32), or in
  evaluation those of an evaluation batch, whichever is more;
- on a CPU, where the measured peak is the process's resident set: the resident set at the trial's start, and the
  weights as loaded (fp32, beside the checkpoint's pages) if that is more than training needs.

It is an estimate (kernels' workspaces, the allocator's slack and PyTorch's own copies are left out); the tests hold it
to within `STATED_ERROR` of the measured peak on a CPU. Usage::

    estimate = estimate_memory(model, config, device, start_rss)
    check_fits(estimate, device)        # MemoryPlanError with the figures and the fix
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from sweeper.errors import SweeperError
from sweeper.methods.roles import count_layers, weight_modules
from sweeper.precision import AUTOCAST_DTYPES, resolve_precision

if TYPE_CHECKING:
    from sweeper.config import TrialConfig

MEMINFO = Path("/proc/meminfo")
ACTIVATION_WIDTHS = 12  # hidden-size vectors a layer keeps per token: norms, q/k/v, attention out, residuals, masks
FFN_WIDTHS = 3  # feed-forward-size vectors per token: the up (and gate) projections and the activation's output
# A language model's logits over the vocabulary: in training the logits, their fp32 copy, the loss's log-softmax and
# the gradients of both; in evaluation (no gradients, `eval_batch_size` rows) the logits, the copy and the softmax.
LOGIT_COPIES, EVAL_LOGIT_COPIES = 5, 3
LOADING_COPIES = 2  # on a CPU, loading holds the model and the checkpoint's pages it reads from (memory-mapped)
STATED_ERROR = 0.35  # the estimate's error against the measured peak the tests allow, relative
MIB = 2**20


class MemoryPlanError(SweeperError):
    """A configuration whose estimated peak exceeds the memory its device has: the trial fails before it trains."""


@dataclass(frozen=True)
class MemoryEstimate:
    """The parts of a trial's estimated peak, in bytes."""

    weights: int
    gradients: int
    optimizer: int
    activations: int
    base: int = 0  # the process's resident set at the trial's start (CPU only)
    loading: int = 0  # the weights as loaded, before frozen ones are held in a smaller type (CPU only)

    @property
    def total(self) -> int:
        return self.base + max(self.weights + self.gradients + self.optimizer + self.activations, self.loading)

    def describe(self) -> str:
        parts = {"weights": self.weights, "gradients": self.gradients, "AdamW": self.optimizer,
                 "activations": self.activations, "process": self.base}
        return ", ".join(f"{name} {value / 2**30:.2f}" for name, value in parts.items() if value) + " GB"


SIZE_NAMES = ("hidden_size", "d_model", "n_embd")


def dimensions(config: object) -> tuple[int, int, int, int]:
    """(hidden, feed-forward, heads, vocabulary) of a model config, whatever the family names them; a composite
    config (an encoder with a new decoder: `EncoderDecoderConfig`) by its encoder's."""
    if not any(hasattr(config, name) for name in SIZE_NAMES) and hasattr(config, "encoder"):
        config = config.encoder
    hidden = next((getattr(config, name) for name in SIZE_NAMES if hasattr(config, name)), None)
    if hidden is None:
        raise SweeperError(f"cannot plan memory for a {type(config).__name__}: it names no hidden size "
                           f"({', '.join(SIZE_NAMES)})")
    ffn = next((getattr(config, name) for name in ("intermediate_size", "encoder_ffn_dim", "d_ff", "n_inner")
                if getattr(config, name, None)), 4 * hidden)
    heads = next((getattr(config, name) for name in ("num_attention_heads", "encoder_attention_heads", "num_heads",
                                                      "n_head") if getattr(config, name, None)), 1)
    return hidden, ffn, heads, getattr(config, "vocab_size", 0)


def lowest_trained_layer(model: nn.Module) -> int:
    """The lowest numbered layer with a trained parameter; 0 when a trained parameter sits below the layers
    (embeddings, full fine-tuning); the layer count when only the head trains."""
    layers = count_layers(model)
    places = {module.name[: len(module.name) - len(module.local) - 1]: module.layer
              for module in weight_modules(model) if module.layer is not None}
    lowest = layers
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        layer = next((number for prefix, number in places.items() if name.startswith(prefix + ".")), None)
        if layer is None and "embed" in name:
            return 0
        lowest = min(lowest, layer if layer is not None else lowest)
    return lowest


def sequence_tokens(config: TrialConfig, encoder_decoder: bool) -> tuple[int, int]:
    """(tokens the layers see per input, tokens scored over the vocabulary) at the longest a batch can be."""
    data = config.data
    tokens = data.pad_to or data.max_length
    if config.task != "cmg":
        return tokens, 0
    target = data.message_tokens + 1
    return (tokens + target, target) if encoder_decoder else (tokens + target + 1, tokens + target + 1)


def estimate_memory(model: nn.Module, config: TrialConfig, device: torch.device, base: int = 0) -> MemoryEstimate:
    """The estimated peak of training `model` (the method applied, before it is moved or its weights held) as
    `config` says on `device`; `base` is the resident set at the trial's start (CPU)."""
    precision = resolve_precision(config.precision, device)
    compute = AUTOCAST_DTYPES.get(precision)
    half = compute is not None
    weights = trained = 0
    matrices = {id(p) for module in model.modules() if isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"
                for p in module.parameters(recurse=False)}
    seen: set[int] = set()
    for parameter in model.parameters():
        if id(parameter) in seen:
            continue
        seen.add(id(parameter))
        count = parameter.numel()
        if parameter.requires_grad:
            trained += count
            weights += 4 * count
        elif not parameter.is_floating_point():  # a quantized base's packed weights, as stored
            weights += count * parameter.element_size()
        else:
            weights += (2 if half and id(parameter) in matrices else 4) * count
    hf = model.get_base_model() if hasattr(model, "get_base_model") else model
    encoder_decoder = bool(getattr(hf.config, "is_encoder_decoder", False))
    hidden, ffn, heads, vocab = dimensions(hf.config)
    tokens, scored = sequence_tokens(config, encoder_decoder)
    batch = math.ceil(config.batch_size / config.grad_accum)
    width = 2 if half else 4
    layers = count_layers(model) - lowest_trained_layer(model)
    per_layer = batch * tokens * (ACTIVATION_WIDTHS * hidden + FFN_WIDTHS * ffn + heads * tokens) * width
    if config.gradient_checkpointing:
        activations = layers * batch * tokens * hidden * width + (per_layer if layers else 0)
    else:
        activations = layers * per_layer
    activations += LOGIT_COPIES * batch * scored * vocab * 4
    evaluation = EVAL_LOGIT_COPIES * config.eval_batch_size * scored * vocab * 4  # no gradients, a larger batch
    loading = LOADING_COPIES * 4 * sum(p.numel() for p in model.parameters()) if device.type == "cpu" else 0
    return MemoryEstimate(weights, 4 * trained, 8 * trained, max(activations, evaluation),
                          base if device.type == "cpu" else 0, loading)


def available_bytes(device: torch.device, base: int = 0) -> int | None:
    """What a trial on `device` may use: the GPU's total memory, or on a CPU the memory available now (Linux's
    MemAvailable) plus the process's own resident set `base`; None where it cannot be read."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 + base
    except OSError:
        pass
    return None


def check_fits(estimate: MemoryEstimate, device: torch.device, config: TrialConfig) -> str:
    """A `MemoryPlanError` naming the estimate, the room and what to lower when the trial cannot fit; else the
    note for its run (`sweeper.memory_plan`): the estimate against the room, or that the room is unknown."""
    room = available_bytes(device, estimate.base)
    where = "GPU memory" if device.type == "cuda" else "available RAM"
    if room is None:
        return f"estimated {estimate.total / MIB:.0f} MB; not checked ({where} unknown)"
    if estimate.total > room:
        raise MemoryPlanError(
            f"estimated peak memory {estimate.total / 2**30:.2f} GB ({estimate.describe()}) exceeds the "
            f"{room / 2**30:.2f} GB of {where}: lower batch_size (or raise grad_accum), max_length, "
            + ("set gradient_checkpointing: true, " if not config.gradient_checkpointing else "")
            + "train fewer parameters (lora, adapter) or quantize the base (quantization: 4bit)")
    return f"estimated {estimate.total / MIB:.0f} MB of {room / MIB:.0f} MB {where}"
