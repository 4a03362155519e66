"""4-bit and 8-bit bases (`quantization: none | 8bit | 4bit`): QLoRA's recipe through transformers' bitsandbytes
integration, where a CUDA GPU is present.

`4bit` loads the frozen base's linear layers as NF4 with double quantization and bf16 compute (Dettmers et al.,
2023); `8bit` as LLM.int8(). PEFT's `prepare_model_for_kbit_training` then keeps layer norms and the head in fp32.
The base never trains (`method: full` is a spec error); LoRA trains in fp32 beside it. QLoRA's recommended LoRA
settings for such a base (its paper's, for models up to 13 B): every linear layer as a target
(`lora.targets: [query, key, value, attention_output, ffn_in, ffn_out]`), rank 64, alpha 16, dropout 0.1, learning
rate 2e-4 (`search_spaces/code-llm.yaml` starts there). The frozen-prefix cache is off with a quantized base: its
states would come from bitsandbytes' GPU kernels, which this project could not check cached against uncached
(nothing here has a GPU), so it stays off rather than unverified. bitsandbytes is an optional extra
(`pip install 'sweeper[quantization]'`), and needs a CUDA GPU: anywhere else a quantized trial is a one-line error
before anything loads.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch

from sweeper.errors import SweeperError

QUANTIZED = ("8bit", "4bit")


def quantization_problem(quantization: str, device_type: str) -> str | None:
    """Why `quantization` cannot run on a `device_type` device; None when it can (or when it is `none`).

        >>> quantization_problem("4bit", "cpu")
        "4bit needs a CUDA GPU (bitsandbytes' kernels), and this trial runs on cpu"
        >>> quantization_problem("none", "cpu") is None
        True
    """
    if quantization not in QUANTIZED:
        return None
    if device_type != "cuda":
        return f"{quantization} needs a CUDA GPU (bitsandbytes' kernels), and this trial runs on {device_type}"
    if importlib.util.find_spec("bitsandbytes") is None:
        return f"{quantization} needs bitsandbytes: pip install 'sweeper[quantization]'"
    return None


def check_quantization(quantization: str, device_type: str) -> None:
    """A one-line `SweeperError` naming the field and the fix when `quantization` cannot run here."""
    problem = quantization_problem(quantization, device_type)
    if problem:
        raise SweeperError(f"field 'quantization': {problem}: use quantization: none, or run on a GPU")


def loading_options(quantization: str) -> dict[str, Any]:
    """What `from_pretrained` needs to load a quantized base on the GPU (nothing for `none`); checked first."""
    if quantization not in QUANTIZED:
        return {}
    check_quantization(quantization, "cuda" if torch.cuda.is_available() else "cpu")
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        settings = BitsAndBytesConfig(load_in_8bit=True)
    else:
        settings = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                      bnb_4bit_compute_dtype=torch.bfloat16)
    return {"quantization_config": settings, "device_map": {"": torch.cuda.current_device()}}


def prepared(model: Any, quantization: str) -> Any:
    """A loaded quantized base made ready for parameter-efficient training (PEFT's recipe); others unchanged."""
    if quantization not in QUANTIZED:
        return model
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
