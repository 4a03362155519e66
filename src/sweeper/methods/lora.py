"""PEFT LoRA (and DoRA with `dora: true`) on modules chosen by role and layer.

The task head trains in full as PEFT's `modules_to_save`, so PEFT saves it with the adapter weights and
`PeftModel.from_pretrained` restores both.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from sweeper.methods.base import LAYERS_HELP, Layers, Method, MethodSettings
from sweeper.methods.roles import head_names, resolve_targets, transposed

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel


class LoraSettings(MethodSettings):
    """Rank, scaling, dropout, the modules LoRA adapts and in which layers."""

    rank: int = Field(8, ge=1, description="rank r of the low-rank update")
    alpha: float = Field(16, gt=0, description="the update is scaled by alpha / r")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout on LoRA's input")
    targets: list[str] = Field(default_factory=lambda: ["query", "value"],
                               description="roles (query, key, value, attention_output, ffn_in, ffn_out) or module names")
    layers: Layers = Field("all", description=LAYERS_HELP)
    dora: bool = Field(False, description="DoRA: weight-decomposed LoRA")


def apply(model: PreTrainedModel, config: Any) -> PeftModel:
    """Low-rank updates (rank r, scaled by alpha / r) on the target modules of the selected layers."""
    from peft import LoraConfig, get_peft_model

    settings: LoraSettings = config.lora
    targets = resolve_targets(model, settings.targets, settings.layers)
    return get_peft_model(model, LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        use_dora=settings.dora,
        target_modules=targets,
        modules_to_save=head_names(model),
        fan_in_fan_out=transposed(model, targets),
    ))


def save(model: PeftModel, directory: Path) -> None:
    """The adapter weights and the head, in PEFT's format (`adapter_config.json`, `adapter_model.safetensors`)."""
    model.save_pretrained(directory)


def load(base_model: PreTrainedModel, directory: Path) -> PeftModel:
    """The fresh backbone with the saved adapter weights and head."""
    from peft import PeftModel

    return PeftModel.from_pretrained(base_model, directory)


METHOD = Method("lora", "PEFT LoRA: low-rank updates of chosen projections", apply, save, load, LoraSettings,
                shown=("rank",), export_format="peft", mergeable=True)
