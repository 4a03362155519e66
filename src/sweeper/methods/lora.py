"""PEFT methods: LoRA (DoRA with `dora: true`) and IA3, on modules chosen by role and layer.

The task head trains in full as PEFT's `modules_to_save`, so PEFT saves it with the adapter weights and
`PeftModel.from_pretrained` restores both.
"""

from __future__ import annotations

from pathlib import Path

from peft import IA3Config, LoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel
from transformers.pytorch_utils import Conv1D

from sweeper.config import TrialConfig
from sweeper.errors import MethodError
from sweeper.methods.roles import head_names, resolve_targets


def apply_lora(model: PreTrainedModel, config: TrialConfig) -> PeftModel:
    """Low-rank updates (rank r, scaled by alpha / r) on the target modules of the selected layers."""
    settings = config.lora
    targets = resolve_targets(model, settings.targets, settings.layers)
    return get_peft_model(model, LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        use_dora=settings.dora,
        target_modules=targets,
        modules_to_save=head_names(model),
        fan_in_fan_out=_transposed(model, targets),
    ))


def apply_ia3(model: PreTrainedModel, config: TrialConfig) -> PeftModel:
    """Learned scaling vectors: on the outputs of the targets, on the inputs of the feed-forward ones."""
    settings = config.ia3
    targets = resolve_targets(model, settings.targets, settings.layers)
    feedforward = resolve_targets(model, settings.feedforward, settings.layers)
    stray = [name for name in feedforward if name not in targets]
    if stray:
        raise MethodError(f"ia3.feedforward must be among ia3.targets; not a target: {stray[0]}")
    return get_peft_model(model, IA3Config(
        target_modules=targets,
        feedforward_modules=feedforward,
        modules_to_save=head_names(model),
        fan_in_fan_out=_transposed(model, targets),
    ))


def _transposed(model: PreTrainedModel, targets: list[str]) -> bool:
    """True when the targets are GPT-2 style `Conv1D` layers, which store their weight as (in, out)."""
    modules = dict(model.named_modules())
    return any(isinstance(modules[name], Conv1D) for name in targets)


def save(model: PeftModel, directory: Path) -> None:
    """The adapter weights and the head, in PEFT's format (`adapter_config.json`, `adapter_model.safetensors`)."""
    model.save_pretrained(directory)


def load(base_model: PreTrainedModel, directory: Path) -> PeftModel:
    """The fresh backbone with the saved adapter weights and head."""
    return PeftModel.from_pretrained(base_model, directory)
