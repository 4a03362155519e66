"""Backbones: the embedded default (built offline) or any hub name or local `save_pretrained` folder."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from sweeper.backbone.embedded import embedded_backbone_dir
from sweeper.errors import SweeperError

__all__ = ["embedded_backbone_dir", "load_classifier", "load_tokenizer", "resolve_backbone"]

EMBEDDED = "embedded"
Loaded = TypeVar("Loaded")


def resolve_backbone(name: str) -> str:
    """`"embedded"` becomes the embedded backbone's folder (built if needed); any other name is kept."""
    return str(embedded_backbone_dir()) if name == EMBEDDED else name


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """The backbone's tokenizer; a `SweeperError` if it cannot be loaded."""
    return _load(name, AutoTokenizer.from_pretrained)


def load_classifier(name: str, num_labels: int = 2) -> PreTrainedModel:
    """The backbone with a new sequence-classification head; a `SweeperError` if it cannot be loaded."""
    return _load(name, lambda path: AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels))


def _load(name: str, loader: Callable[[str], Loaded]) -> Loaded:
    """`loader(resolved name)`, quiet about the expected new head, load failures as one-line errors."""
    path = resolve_backbone(name)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return loader(path)
    except (OSError, ValueError) as error:
        raise SweeperError(
            f"cannot load backbone '{name}': give a hub name (needs internet) "
            "or a local folder saved with save_pretrained"
        ) from error
    finally:
        hf_logging.set_verbosity(verbosity)
