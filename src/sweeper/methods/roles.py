"""Where things sit in a backbone: target roles, numbered layers and the task head.

A role (`query`, `key`, `value`, `attention_output`, `ffn_in`, `ffn_out`) names the same job in every
architecture family; `resolve_targets` turns roles (or plain module names) into the full names of the
modules that do it, in the layers asked for.

    >>> from transformers import RobertaConfig, RobertaForSequenceClassification
    >>> roberta = RobertaForSequenceClassification(RobertaConfig(
    ...     vocab_size=10, hidden_size=8, num_hidden_layers=3, num_attention_heads=2, intermediate_size=16))
    >>> resolve_targets(roberta, ["query"], "0-1")
    ['roberta.encoder.layer.0.attention.self.query', 'roberta.encoder.layer.1.attention.self.query']

Layers are numbered from 0 in model order; an encoder-decoder numbers its encoder layers first and its
decoder layers after them (as AdapterHub's `leave_out` does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sweeper.errors import MethodError
from sweeper.methods.base import Layers

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedModel

ROLES = ("query", "key", "value", "attention_output", "ffn_in", "ffn_out")
NEW_DECODER = "encoder-decoder"  # the model type of Hugging Face's EncoderDecoderModel

# Each pattern must match the whole module name after its layer prefix (`...layer.3.`), so that BERT's
# `output.dense` (the FFN output) never matches `attention.output.dense`.
_ENCODER = {
    "query": r"attention\.self\.query",
    "key": r"attention\.self\.key",
    "value": r"attention\.self\.value",
    "attention_output": r"attention\.output\.dense",
    "ffn_in": r"intermediate\.dense",
    "ffn_out": r"output\.dense",
}
_T5 = {
    "query": r"layer\.\d+\.(SelfAttention|EncDecAttention)\.q",
    "key": r"layer\.\d+\.(SelfAttention|EncDecAttention)\.k",
    "value": r"layer\.\d+\.(SelfAttention|EncDecAttention)\.v",
    "attention_output": r"layer\.\d+\.(SelfAttention|EncDecAttention)\.o",
    "ffn_in": r"layer\.\d+\.DenseReluDense\.(wi|wi_0|wi_1)",
    "ffn_out": r"layer\.\d+\.DenseReluDense\.wo",
}
_BART = {
    "query": r"(self_attn|encoder_attn)\.q_proj",
    "key": r"(self_attn|encoder_attn)\.k_proj",
    "value": r"(self_attn|encoder_attn)\.v_proj",
    "attention_output": r"(self_attn|encoder_attn)\.out_proj",
    "ffn_in": r"fc1",
    "ffn_out": r"fc2",
}
# GPT-2 computes query, key and value in one fused projection, `c_attn`: all three roles name it.
_GPT2 = {
    "query": r"attn\.c_attn",
    "key": r"attn\.c_attn",
    "value": r"attn\.c_attn",
    "attention_output": r"attn\.c_proj",
    "ffn_in": r"mlp\.c_fc",
    "ffn_out": r"mlp\.c_proj",
}
_LLAMA = {
    "query": r"self_attn\.q_proj",
    "key": r"self_attn\.k_proj",
    "value": r"self_attn\.v_proj",
    "attention_output": r"self_attn\.o_proj",
    "ffn_in": r"mlp\.(gate_proj|up_proj)",
    "ffn_out": r"mlp\.down_proj",
}
# StarCoder2: Llama's attention names, GPT-2's feed-forward names (one up-projection, no gate).
_STARCODER2 = _LLAMA | {"ffn_in": r"mlp\.c_fc", "ffn_out": r"mlp\.c_proj"}
FAMILIES: dict[str, dict[str, str]] = {
    **dict.fromkeys(("bert", "roberta", "xlm-roberta", "electra"), _ENCODER),
    # An encoder-only backbone with a new decoder for message generation (`sweeper.backbone.new_decoder`): the
    # decoder is the head and trains whole, so roles and layers name the encoder's modules only.
    NEW_DECODER: _ENCODER,
    **dict.fromkeys(("t5", "mt5"), _T5),
    **dict.fromkeys(("bart", "mbart", "plbart"), _BART),
    **dict.fromkeys(("gpt2", "gpt_bigcode"), _GPT2),
    "starcoder2": _STARCODER2,
    **dict.fromkeys(("llama", "mistral", "qwen2", "qwen3"), _LLAMA),
}

# The first `<stack>.<index>.` in a module name: `encoder.layer.3.`, `decoder.block.0.`, `h.11.`, `layers.2.`.
_LAYER = re.compile(r"(?:^|\.)(?:layer|layers|block|h)\.(\d+)\.")


@dataclass(frozen=True)
class WeightModule:
    """A module with a weight of its own: its full name, its layer number (None outside the layers) and
    its name inside that layer (`attention.self.query`)."""

    name: str
    layer: int | None
    local: str


def weight_modules(model: nn.Module) -> list[WeightModule]:
    """Every module that holds a `weight` parameter itself, with its place in the numbered layers; outside a new
    decoder, which trains whole."""
    numbers: dict[str, int] = {}
    found = []
    decoder = tuple(f"{name}." for name in head_names(model)) if has_new_decoder(model) else ()
    for name, module in model.named_modules():
        if "weight" not in dict(module.named_parameters(recurse=False)) or name.startswith(decoder):
            continue
        match = _LAYER.search(name)
        if match is None:
            found.append(WeightModule(name, None, name))
            continue
        layer = numbers.setdefault(name[: match.end(1)], len(numbers))
        found.append(WeightModule(name, layer, name[match.end():]))
    return found


def count_layers(model: nn.Module) -> int:
    """How many numbered layers the model has, encoder and decoder together."""
    return len({module.layer for module in weight_modules(model) if module.layer is not None})


def select_layers(model: nn.Module, layers: Layers) -> list[int]:
    """The layer numbers that a `layers` setting picks, checked against the model.

    `"all"`; a list `[0, 1, 5]`; a string of indices and inclusive ranges `"0-5"`, `"0-2,7"`;
    `"not ..."` picks every layer except those (`"not 0-1"`).
    """
    count = count_layers(model)
    if layers == "all":
        return list(range(count))
    leave_out = isinstance(layers, str) and layers.startswith("not ")
    picked = _parse_layers(layers.removeprefix("not ")) if isinstance(layers, str) else set(layers)
    outside = sorted(index for index in picked if not 0 <= index < count)
    if outside:
        raise MethodError(f"layers {layers!r}: {outside} out of range, the model has layers 0-{count - 1}")
    chosen = sorted(set(range(count)) - picked if leave_out else picked)
    if not chosen:
        raise MethodError(f"layers {layers!r} selects no layer (the model has layers 0-{count - 1})")
    return chosen


def _parse_layers(text: str) -> set[int]:
    """'0-2,7' -> {0, 1, 2, 7}."""
    picked: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if match is None or (match[2] is not None and int(match[2]) < int(match[1])):
            raise MethodError(f"layers {text!r}: write 'all', a list [0, 1], '0-5', '0-2,7' or 'not 0-1'")
        first = int(match[1])
        picked.update(range(first, int(match[2] or first) + 1))
    return picked


def resolve_targets(model: PreTrainedModel, targets: list[str], layers: Layers) -> list[str]:
    """Full names of the modules that `targets` (roles or module names) mean, in the selected layers.

    A target that is not a role is a module name, matched as a name suffix (`attention.self.query`);
    a named module outside the numbered layers (`pooler.dense`) is kept whatever `layers` says.
    """
    model_type = model.config.model_type
    modules = weight_modules(model)
    chosen = set(select_layers(model, layers))
    names: list[str] = []
    for target in targets:
        matched = [module for module in modules if _matches(module, target, model_type)]
        if not matched:
            raise MethodError(_missing(target, model_type, modules))
        names += [m.name for m in matched if (m.layer is None or m.layer in chosen) and m.name not in names]
    return names


def _matches(module: WeightModule, target: str, model_type: str) -> bool:
    if target in ROLES:
        pattern = FAMILIES.get(model_type, {}).get(target)
        return module.layer is not None and pattern is not None and re.fullmatch(pattern, module.local) is not None
    return module.name == target or module.name.endswith("." + target)


def _missing(target: str, model_type: str, modules: list[WeightModule]) -> str:
    """The one-line message for a target that names nothing in this model."""
    names = ", ".join(dict.fromkeys(module.local for module in modules))
    if target not in ROLES:
        return (f"target {target!r} is neither a role ({', '.join(ROLES)}) nor a module of this "
                f"{model_type} model; its modules: {names}")
    if model_type not in FAMILIES:
        return (f"target role {target!r} is not mapped for model type {model_type!r} (mapped: "
                f"{', '.join(FAMILIES)}); name modules instead, e.g. one of: {names}")
    available = [role for role in ROLES if any(_matches(module, role, model_type) for module in modules)]
    return (f"target role {target!r} matches no module of this {model_type} model; "
            f"its roles: {', '.join(available)}")


def transposed(model: PreTrainedModel, targets: list[str]) -> bool:
    """True when the targets are GPT-2 style `Conv1D` layers, which store their weight as (in, out): PEFT must
    know (`fan_in_fan_out`)."""
    from transformers.pytorch_utils import Conv1D

    modules = dict(model.named_modules())
    return any(isinstance(modules[name], Conv1D) for name in targets)


def has_new_decoder(model: nn.Module) -> bool:
    """Whether the model is an encoder-only backbone with a new decoder (`sweeper.backbone.new_decoder`)."""
    return getattr(getattr(model, "config", None), "model_type", None) == NEW_DECODER


def adapted_part(model: PreTrainedModel) -> PreTrainedModel:
    """The part of the model a method inserts modules into: the encoder of a model with a new decoder (the decoder
    trains whole), else the whole model."""
    return model.get_encoder() if has_new_decoder(model) else model


def head_names(model: PreTrainedModel) -> list[str]:
    """The top-level modules around the base model that hold weights (`classifier`, `score`, ...): the task head.

    The output embeddings (an LM head, often tied to the input embeddings) are not a head here and stay
    frozen; a model with no separate base model (T5ForConditionalGeneration) has no head. A new decoder (and
    its projection from the encoder's width, if any) is the head of an encoder-only backbone.
    """
    from torch import nn

    if has_new_decoder(model):
        return [name for name, child in model.named_children() if child is not model.get_encoder()]
    base = getattr(model, model.base_model_prefix, None)
    if not isinstance(base, nn.Module):
        return []
    skip = (base, model.get_output_embeddings())
    return [name for name, child in model.named_children()
            if all(child is not other for other in skip) and any(True for _ in child.parameters())]
