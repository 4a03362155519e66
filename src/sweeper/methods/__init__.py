"""Fine-tuning methods: turn a backbone into the model that trains, save what trained, load it back.

Usage::

    model = apply_method(AutoModelForSequenceClassification.from_pretrained(path), config)
    trainable, total = count_parameters(model)
    save_trained(model, config, out)                 # after training
    again = load_trained(AutoModelForSequenceClassification.from_pretrained(path), config, out)

Each module of this package that defines a `METHOD` (a `sweeper.methods.base.Method`) is a method; `METHODS`
maps the method names to them.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeper.methods.base import Method, TrainableModel

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedModel

__all__ = ["METHODS", "Method", "TrainableModel", "apply_method", "count_parameters", "load_trained", "save_trained"]


def discover() -> dict[str, Method]:
    """The `METHOD` of every module in this package, by name, in the order the modules sort."""
    found: dict[str, Method] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        method = getattr(importlib.import_module(f"{__name__}.{info.name}"), "METHOD", None)
        if isinstance(method, Method):
            found[method.name] = method
    return found


METHODS: dict[str, Method] = discover()


def apply_method(model: PreTrainedModel, config: Any) -> TrainableModel:
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


def save_trained(model: TrainableModel, config: Any, directory: Path) -> None:
    """Write only what trained to `directory`: PEFT or `adapters` files (with the head), or the whole model."""
    directory.mkdir(parents=True, exist_ok=True)
    METHODS[config.method].save(model, directory)


def load_trained(base_model: PreTrainedModel, config: Any, directory: Path) -> TrainableModel:
    """Rebuild the trained model from a fresh backbone and what `save_trained` wrote; it is put in eval mode."""
    return METHODS[config.method].load(base_model, directory).eval()
