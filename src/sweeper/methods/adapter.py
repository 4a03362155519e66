"""Bottleneck adapters (AdapterHub `adapters`): down-projection, non-linearity, up-projection, residual.

Placements: `attention` (after the attention block), `ffn` (after the feed-forward block, Pfeiffer),
`houlsby` (both), `parallel` (beside the feed-forward block, He et al.). Each adapter holds exactly a
down-projection (hidden x bottleneck + bottleneck) and an up-projection (bottleneck x hidden + hidden):
these configs add no layer norms, gates or learned scalings, and reuse the backbone's own layer norms.
The backbone is frozen; the task head trains. A new decoder (encoder-only backbones generating messages) is the
head: adapters go into the encoder, the decoder trains whole.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from sweeper.errors import MethodError
from sweeper.methods.base import LAYERS_HELP, Layers, Method, MethodSettings
from sweeper.methods.roles import adapted_part, count_layers, head_names, select_layers

if TYPE_CHECKING:
    from adapters import BnConfig
    from transformers import PreTrainedModel

# adapters warns "none are activated" from a forward pass inside its own set-up; the adapter is active after.
logging.getLogger("adapters.model_mixin").setLevel(logging.ERROR)

ADAPTER_NAME = "sweeper"
HEAD_FILE = "head.safetensors"


class AdapterSettings(MethodSettings):
    """Where the adapters sit, their size, their layers and their non-linearity."""

    placement: Literal["attention", "ffn", "houlsby", "parallel"] = Field(
        "houlsby", description="after attention, after the feed-forward block (ffn), both (houlsby), or parallel")
    bottleneck: int | None = Field(None, ge=1, description="bottleneck size; overrides reduction_factor")
    reduction_factor: float = Field(16, gt=0, description="bottleneck = hidden size / reduction_factor")
    layers: Layers = Field("all", description=LAYERS_HELP)
    non_linearity: Literal["relu", "gelu", "swish", "tanh"] = Field("relu", description="inside the bottleneck")


def apply(model: PreTrainedModel, config: Any) -> PreTrainedModel:
    """Add one adapter in the selected layers, train it and the head, freeze the rest."""
    import adapters

    settings: AdapterSettings = config.adapter
    part = adapted_part(model)  # the encoder, when a new decoder is the head
    chosen = select_layers(part, settings.layers)
    leave_out = sorted(set(range(count_layers(part))) - set(chosen))
    adapters.init(part)
    part.add_adapter(ADAPTER_NAME, config=adapter_config(settings, part.config.hidden_size, leave_out))
    part.train_adapter(ADAPTER_NAME)  # activates the adapter, freezes the backbone
    for name in head_names(model):
        model.get_submodule(name).requires_grad_(True)
    return model


def adapter_config(settings: AdapterSettings, hidden: int, leave_out: list[int]) -> BnConfig:
    """The `adapters` config for a placement, with a reduction factor that gives the bottleneck asked for."""
    from adapters import DoubleSeqBnConfig, ParBnConfig, SeqBnConfig

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
    from safetensors.torch import save_file

    adapted_part(model).save_adapter(str(directory), ADAPTER_NAME, use_safetensors=True)
    head = {f"{name}.{key}": tensor.detach().clone().contiguous()  # copies: tied weights share memory
            for name in head_names(model) for key, tensor in model.get_submodule(name).state_dict().items()}
    save_file(head, directory / HEAD_FILE)


def load(base_model: PreTrainedModel, directory: Path) -> PreTrainedModel:
    """The fresh backbone with the saved adapter (active) and head."""
    import adapters
    from safetensors.torch import load_file

    part = adapted_part(base_model)
    adapters.init(part)
    part.load_adapter(str(directory), use_safetensors=True, set_active=True)
    unexpected = base_model.load_state_dict(load_file(directory / HEAD_FILE), strict=False).unexpected_keys
    if unexpected:
        raise MethodError(f"{directory / HEAD_FILE} does not fit this backbone: unexpected {unexpected[0]}")
    return base_model


METHOD = Method("adapter", "bottleneck adapters (AdapterHub): small modules inserted in each layer", apply, save,
                load, AdapterSettings, shown=("placement",), export_format="adapters")
