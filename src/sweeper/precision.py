"""Training at GPU precision and within memory: autocast, fp16's gradient scaler, TF32 and gradient checkpointing.

The training step (`sweeper.step`) and the tasks' evaluation, generation and prediction run inside the same
`autocast`. Usage::

    config = with_precision(config, device)            # `auto`: bf16 where the device runs it fast, else fp32
    check_precision(config.precision, device.type)   # fp16 on a CPU: a SweeperError before anything runs
    hold_frozen_weights(model, config)                 # bf16/fp16: frozen matrix weights stored as autocast uses them
    scaler = gradient_scaler(config, device)           # fp16: scales the loss so small gradients survive
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ContextManager

import torch
from torch import nn

from sweeper.errors import MethodError, SweeperError

if TYPE_CHECKING:
    from sweeper.config import TrialConfig
    from sweeper.methods import TrainableModel

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # fp32: no autocast
AUTO = "auto"
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of CPUs with bfloat16 matrix instructions
CPUINFO = Path("/proc/cpuinfo")
CPU_FLAGS_VARIABLE = "SWEEPER_CPU_FLAGS"  # space-separated flags `auto` reads instead of /proc/cpuinfo's (the tests
# set it empty, so that they run at fp32 on every CPU)


def fast_bf16(device_type: str, cpu_flags: frozenset[str] = frozenset(),
              capability: tuple[int, int] | None = None) -> bool:
    """Whether a device runs bfloat16 matrix products faster than fp32: a CUDA GPU of compute capability 8.0 or
    more (Ampere, Hopper: bf16 tensor cores), or a CPU with AMX or AVX512-BF16 (`CPU_BF16_FLAGS`).

        >>> fast_bf16("cpu", frozenset({"avx2", "amx_bf16"})), fast_bf16("cpu", frozenset({"avx2", "avx512f"}))
        (True, False)
        >>> fast_bf16("cuda", capability=(8, 0)), fast_bf16("cuda", capability=(7, 5))
        (True, False)
    """
    if device_type == "cuda":
        return capability is not None and capability[0] >= 8
    return any(flag in cpu_flags for flag in CPU_BF16_FLAGS)


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as /proc/cpuinfo lists them (empty where there is none: not Linux), or as
    `$SWEEPER_CPU_FLAGS` gives them where it is set."""
    if CPU_FLAGS_VARIABLE in os.environ:
        return frozenset(os.environ[CPU_FLAGS_VARIABLE].split())
    try:
        for line in CPUINFO.read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision a trial runs at: `auto` becomes bf16 where `fast_bf16` says so for this device, else fp32;
    the others stay as they are."""
    if precision != AUTO:
        return precision
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    return "bf16" if fast_bf16(device.type, cpu_flags(), capability) else "fp32"


def with_precision(config: TrialConfig, device: torch.device) -> TrialConfig:
    """`config` with its precision resolved for `device` (itself when nothing changes): what the trial runs, saves
    with its model and logs as `sweeper.precision`, so its predictions repeat at the precision it trained at."""
    precision = resolve_precision(config.precision, device)
    return config if precision == config.precision else config.model_copy(update={"precision": precision})


def hold_frozen_weights(model: nn.Module, config: TrialConfig) -> int:
    """Under bf16 or fp16 autocast, store the frozen weights and biases of matrix products (`nn.Linear`, GPT-2's
    `Conv1D`) in that type once, rather than have autocast cast them at every step: a frozen base takes half the
    memory, and the numbers are the same (autocast rounds them the same way). Parameters shared with anything else
    (embeddings tied to an output projection) and everything that trains stay as they are. Returns the parameters
    converted."""
    dtype = AUTOCAST_DTYPES.get(config.precision)
    if dtype is None or config.quantization != "none":  # a quantized base holds its own formats
        return 0
    from transformers.pytorch_utils import Conv1D

    owners: dict[int, int] = {}
    for module in model.modules():
        for parameter in module.parameters(recurse=False):
            owners[id(parameter)] = owners.get(id(parameter), 0) + 1
    converted = 0
    for module in model.modules():
        if not isinstance(module, (nn.Linear, Conv1D)):
            continue
        for parameter in module.parameters(recurse=False):
            if not parameter.requires_grad and parameter.dtype == torch.float32 and owners[id(parameter)] == 1:
                parameter.data = parameter.data.to(dtype)
                converted += 1
    return converted


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
                           "use precision: auto, bf16 (CPU and GPU) or fp32")


def autocast(config: TrialConfig, device: torch.device) -> ContextManager[Any]:
    """The trial's autocast (bf16 or fp16) for forward passes, training and evaluation alike; fp32: none."""
    dtype = AUTOCAST_DTYPES.get(resolve_precision(config.precision, device))
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
