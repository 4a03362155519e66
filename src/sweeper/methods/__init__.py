"""Fine-tuning methods: turn a backbone into the model that trains, save what trained, load it back.

    >>> model = apply_method(AutoModelForSequenceClassification.from_pretrained(path), config)
    >>> trainable, total = count_parameters(model)
    >>> save_trained(model, config, out)                 # after training
    >>> again = load_trained(AutoModelForSequenceClassification.from_pretrained(path), config, out)

Each method is a module with `apply`, `save` and `load`; `METHODS` maps `config.method` to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peft import PeftModel
from torch import nn
from transformers import PreTrainedModel

from sweeper.config import TrialConfig
from sweeper.methods import adapter, full, lora

TrainableModel = PreTrainedModel | PeftModel


@dataclass(frozen=True)
class Method:
    """How one method applies to a backbone, saves what trained and rebuilds it on a fresh backbone."""

    apply: Callable[[PreTrainedModel, TrialConfig], TrainableModel]
    save: Callable[[Any, Path], None]  # takes the model its own `apply` returned
    load: Callable[[PreTrainedModel, Path], TrainableModel]


METHODS: dict[str, Method] = {
    "full": Method(full.apply, full.save, full.load),
    "lora": Method(lora.apply_lora, lora.save, lora.load),
    "ia3": Method(lora.apply_ia3, lora.save, lora.load),
    "adapter": Method(adapter.apply, adapter.save, adapter.load),
}


def apply_method(model: PreTrainedModel, config: TrialConfig) -> TrainableModel:
    """The model that trains for `config.method`; changes `model` in place.

    The task head always trains; the rest is frozen except what the method adds (`full` trains all).
    """
    return METHODS[config.method].apply(model, config)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters, each shared tensor counted once.

    The total counts what the model holds: PEFT's frozen original of the head and its trained copy both.
    """
    parameters = list(model.parameters())
    return sum(p.numel() for p in parameters if p.requires_grad), sum(p.numel() for p in parameters)


def save_trained(model: TrainableModel, config: TrialConfig, directory: Path) -> None:
    """Write only what trained to `directory`: PEFT or `adapters` files (with the head), or the whole model."""
    directory.mkdir(parents=True, exist_ok=True)
    METHODS[config.method].save(model, directory)


def load_trained(base_model: PreTrainedModel, config: TrialConfig, directory: Path) -> TrainableModel:
    """Rebuild the trained model from a fresh backbone and what `save_trained` wrote; it is put in eval mode."""
    return METHODS[config.method].load(base_model, directory).eval()
