"""PEFT IA3: learned scaling vectors on the key, value and feed-forward activations.

The task head trains in full as PEFT's `modules_to_save`; saving and loading are LoRA's (PEFT's format).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from sweeper.errors import MethodError
from sweeper.methods import lora
from sweeper.methods.base import LAYERS_HELP, Layers, Method, MethodSettings
from sweeper.methods.roles import head_names, resolve_targets, transposed

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel


class IA3Settings(MethodSettings):
    """The modules whose outputs are scaled, those of them scaled on their inputs instead, and the layers."""

    targets: list[str] = Field(default_factory=lambda: ["key", "value", "ffn_out"],
                               description="roles or module names whose outputs are scaled")
    feedforward: list[str] = Field(default_factory=lambda: ["ffn_out"],
                                   description="those of the targets scaled on their inputs instead")
    layers: Layers = Field("all", description=LAYERS_HELP)


def apply(model: PreTrainedModel, config: Any) -> PeftModel:
    """Learned scaling vectors: on the outputs of the targets, on the inputs of the feed-forward ones."""
    from peft import IA3Config, get_peft_model

    settings: IA3Settings = config.ia3
    targets = resolve_targets(model, settings.targets, settings.layers)
    feedforward = resolve_targets(model, settings.feedforward, settings.layers)
    stray = [name for name in feedforward if name not in targets]
    if stray:
        raise MethodError(f"ia3.feedforward must be among ia3.targets; not a target: {stray[0]}")
    return get_peft_model(model, IA3Config(
        target_modules=targets,
        feedforward_modules=feedforward,
        modules_to_save=head_names(model),
        fan_in_fan_out=transposed(model, targets),
    ))


METHOD = Method("ia3", "PEFT IA3: learned scaling of activations", apply, lora.save, lora.load, IA3Settings,
                shown=("targets",), export_format="peft", mergeable=True)
