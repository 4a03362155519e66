"""The machine a trial ran on, as far as it decides the trial's numbers: the CPU (model and the instruction sets math
kernels dispatch on), the GPU, and torch with its math libraries.

Floating-point results are bit-for-bit the same only where the same kernels run: oneDNN, MKL and cuBLAS pick their
code by CPU features and GPU, and a fused multiply-add or an AVX-512 reduction rounds differently from an AVX2 one.
So `sweeper reproduce` demands identical numbers on a machine of the same kind (same `machine_kind`) and, elsewhere,
numbers equal within a tolerance.

    >>> sorted(describe_machine())
    ['cpu', 'cpu_flags', 'gpu', 'math', 'torch']
    >>> len(machine_kind(describe_machine()))
    12
"""

from __future__ import annotations

import functools
import hashlib
import json
import platform
import re
from pathlib import Path

import torch

from sweeper.tracking.schema import Tag

# The CPU features that change which math kernels run (x86 and Arm); the rest of /proc/cpuinfo's flags do not.
KERNEL_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "avx_vnni", "asimd", "sve", "sve2",
                "bf16", "i8mm")


def cpu_info() -> tuple[str, list[str]]:
    """The CPU's model name and its kernel-relevant flags, from /proc/cpuinfo (the platform's name elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), []
    model = re.search(r"^(?:model name|Model|CPU part)\s*:\s*(.+)$", text, re.MULTILINE)
    flags = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", text, re.MULTILINE)
    present = set(flags.group(1).split()) if flags else set()
    return (model.group(1).strip() if model else platform.machine()), [f for f in KERNEL_FLAGS if f in present]


def math_libraries() -> str:
    """torch's math libraries and their versions, as `torch.__config__.show()` names them (oneMKL, oneDNN, ...), and
    the vector instructions its own CPU kernels dispatch to."""
    found = re.findall(r"(Intel\(R\) oneAPI Math Kernel Library Version [\w.]+|(?:MKL-DNN|oneDNN) v[\w.]+|"
                       r"OpenBLAS [\w.]+|CUDA Runtime [\w.]+|CuDNN [\w.]+)", torch.__config__.show())
    return "; ".join([*dict.fromkeys(found), f"CPU capability {torch.backends.cpu.get_cpu_capability()}"])


@functools.lru_cache(maxsize=1)
def describe_machine() -> dict[str, str]:
    """What decides a trial's floating-point results on this machine (read once per process)."""
    model, flags = cpu_info()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {"cpu": model, "cpu_flags": " ".join(flags), "gpu": gpu, "torch": torch.__version__,
            "math": math_libraries()}


def machine_kind(machine: dict[str, str]) -> str:
    """A short name for machines that run the same kernels: a digest of the description."""
    return hashlib.sha256(json.dumps(machine, sort_keys=True).encode()).hexdigest()[:12]


def machine_tags() -> dict[str, str]:
    """The run tags that record this machine (see `Tag.MACHINE`, `Tag.MACHINE_KIND`)."""
    machine = describe_machine()
    return {Tag.MACHINE: json.dumps(machine), Tag.MACHINE_KIND: machine_kind(machine)}
