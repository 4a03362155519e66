"""Bottleneck adapters (AdapterHub `adapters`): down-projection, non-linearity, up-projection, residual.

Placements: `attention` (after the attention block), `ffn` (after the feed-forward block, Pfeiffer),
`houlsby` (both), `parallel` (beside the feed-forward block, He et al.). Each adapter holds exactly a
down-projection (hidden x bottleneck + bottleneck) and an up-projection (bottleneck x hidden + hidden):
these configs add no layer norms, gates or learned scalings, and reuse the backbone's own layer norms.
The backbone is frozen; the task head trains.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import adapters
from adapters import BnConfig, DoubleSeqBnConfig, ParBnConfig, SeqBnConfig
from safetensors.torch import load_file, save_file
from transformers import PreTrainedModel

from sweeper.config import AdapterSettings, TrialConfig
from sweeper.errors import MethodError
from sweeper.methods.roles import count_layers, head_names, select_layers

# adapters warns "none are activated" from a forward pass inside its own set-up; the adapter is active after.
logging.getLogger("adapters.model_mixin").setLevel(logging.ERROR)

ADAPTER_NAME = "sweeper"
HEAD_FILE = "head.safetensors"


def apply(model: PreTrainedModel, config: TrialConfig) -> PreTrainedModel:
    """Add one adapter in the selected layers, train it and the head, freeze the rest."""
    settings = config.adapter
    chosen = select_layers(model, settings.layers)
    leave_out = sorted(set(range(count_layers(model))) - set(chosen))
    adapters.init(model)
    model.add_adapter(ADAPTER_NAME, config=adapter_config(settings, model.config.hidden_size, leave_out))
    model.train_adapter(ADAPTER_NAME)  # activates the adapter, freezes the backbone
    for name in head_names(model):
        model.get_submodule(name).requires_grad_(True)
    return model


def adapter_config(settings: AdapterSettings, hidden: int, leave_out: list[int]) -> BnConfig:
    """The `adapters` config for a placement, with a reduction factor that gives the bottleneck asked for."""
    reduction_factor = settings.reduction_factor
    if settings.bottleneck is not None:
        reduction_factor = _reduction_for(hidden, settings.bottleneck)
    common = dict(reduction_factor=reduction_factor, non_linearity=settings.non_linearity, leave_out=leave_out)
    if settings.placement == "attention":
        return DoubleSeqBnConfig(output_adapter=False, **common)
    if settings.placement == "ffn":
        return SeqBnConfig(**common)
    if settings.placement == "houlsby":
        return DoubleSeqBnConfig(**common)
    return ParBnConfig(**common)


def _reduction_for(hidden: int, bottleneck: int) -> float:
    """A factor f with `hidden // f == bottleneck` (the size `adapters` builds), exactly."""
    factor = hidden / bottleneck
    if hidden // factor != bottleneck:  # rounded up past hidden / bottleneck: step one float below
        factor = math.nextafter(factor, 0)
    if hidden // factor != bottleneck:
        raise MethodError(f"adapter.bottleneck {bottleneck} cannot be built for hidden size {hidden}")
    return factor


def save(model: PreTrainedModel, directory: Path) -> None:
    """The adapter in the `adapters` format, and the head's weights in `head.safetensors`."""
    model.save_adapter(str(directory), ADAPTER_NAME, use_safetensors=True)
    head = {f"{name}.{key}": tensor.contiguous()
            for name in head_names(model) for key, tensor in model.get_submodule(name).state_dict().items()}
    save_file(head, directory / HEAD_FILE)


def load(base_model: PreTrainedModel, directory: Path) -> PreTrainedModel:
    """The fresh backbone with the saved adapter (active) and head."""
    adapters.init(base_model)
    base_model.load_adapter(str(directory), use_safetensors=True, set_active=True)
    unexpected = base_model.load_state_dict(load_file(directory / HEAD_FILE), strict=False).unexpected_keys
    if unexpected:
        raise MethodError(f"{directory / HEAD_FILE} does not fit this backbone: unexpected {unexpected[0]}")
    return base_model
