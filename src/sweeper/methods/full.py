"""Full fine-tuning: every weight of the backbone and its head trains."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeper.methods.base import Method

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def apply(model: PreTrainedModel, config: Any) -> PreTrainedModel:
    """Unfreeze every parameter."""
    return model.requires_grad_(True)


def save(model: PreTrainedModel, directory: Path) -> None:
    """The whole model, as `save_pretrained` writes it."""
    model.save_pretrained(directory)


def load(base_model: PreTrainedModel, directory: Path) -> PreTrainedModel:
    """The saved model, in the backbone's class: every weight comes from `directory`."""
    return type(base_model).from_pretrained(directory)


METHOD = Method("full", "full fine-tuning: every weight trains", apply, save, load)
