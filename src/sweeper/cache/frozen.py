"""Frozen-prefix cache: when a trial trains nothing below layer k, compute the frozen part once and train on its output.

LoRA, IA3 and adapters confined to the top layers (`lora.layers: "3"`, ...) leave the embeddings and the layers
below k frozen: with their dropout off they give every commit the same hidden states at every epoch. So, with
`cache_frozen: auto` (the default), the first trial of a node computes them once, in eval mode, for every commit of
its splits and stores them memory-mapped under `$SWEEPER_CACHE/frozen/KEY`; each trial with the same key (same
encoded data, same frozen weights, same k, precision and device) reads them instead of running those layers again.
Served, the frozen embeddings return the cached states of the batch's commits (found by their token ids) and the
frozen layers pass them through, so the model's own forward pass, the method's modules and the head run unchanged:
training, evaluation, generation and saving need no other change.

Prefixes: an encoder (BERT/RoBERTa family: the embeddings and layers below k), the whole encoder of an
encoder-decoder model whose decoder alone trains (message generation: the cross-attention reads the cached
output), or a decoder-only model's token embeddings and layers below k (Llama, Mistral, Qwen2/Qwen3, StarCoder2;
defect prediction): each token's state there depends only on the tokens before it, so a right-padded row's states
are the same in any batch; the upper layers get the attention mask and positions from the model's own forward pass
and recompute their rotary embeddings from them. Message generation with a decoder-only model is not cached: each
token it generates must pass the frozen layers too. Anything else trains as it is, and the trial's
`sweeper.frozen_cache` tag says why.
Memory: the states are written batch by batch to a file (bf16/fp16 when the trial's precision is, fp32 otherwise)
and read back through the page cache, so they never have to fit in memory; a cache larger than the room allowed
(half the free disk, at most `$SWEEPER_FROZEN_CACHE_GB`) is not built, and the trial trains without it. Usage::

    plan = frozen_prefix(backbone, config)          # before the method is applied: a Prefix, or why none
    model = apply_method(backbone, config)
    use = use_frozen_cache(model, plan, config, [train, valid, test], encoding_key, pad_id, device)
    use.note, use.modules, use.fill_tokens    # the trial's tag; what `costs.train_flops` skips and charges once
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

from sweeper.cache import cached_folder, digest
from sweeper.folders import cache_dir
from sweeper.cache.inventory import Entry, entries, trim
from sweeper.data.batching import collate, length_bucketed_batches
from sweeper.errors import MethodError
from sweeper.methods.roles import count_layers, head_names, resolve_targets, select_layers, weight_modules
from sweeper.precision import autocast, resolve_precision

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from sweeper.config import TrialConfig
    from sweeper.data.encoding import EncodedCommit
    from sweeper.methods import TrainableModel

FORMAT = 1
ENCODERS = ("bert", "roberta", "xlm-roberta", "camembert")  # embeddings, then `encoder.layer`, nothing between
# Decoder-only bases with `embed_tokens`, then `layers` that return their hidden states, then `norm`, the positions
# applied inside the layers (rotary): GPT-2 adds position embeddings beside its token embeddings, and is not here.
ROTARY_DECODERS = ("llama", "mistral", "qwen2", "qwen3", "starcoder2")
PREFIX_BATCH = 32  # commits per forward pass while building: fixed, so the states do not depend on a trial key
BUDGET_VARIABLE = "SWEEPER_FROZEN_CACHE_GB"  # the frozen-prefix cache's budget on a node, in GB
DEFAULT_BUDGET_GB = 20.0
STORAGE = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
STATES, INDEX, META = "states.npy", "index.npy", "meta.json"


@dataclass(frozen=True)
class Prefix:
    """A model's frozen prefix: `layers` (an encoder's embeddings and its layers below `layer`), `decoder` (a
    decoder-only model's token embeddings and its layers below `layer`) or `encoder` (the whole encoder of an
    encoder-decoder model, whose layers are those below `layer`); `weights` is a hash of every weight it computes
    with."""

    kind: str
    layer: int
    weights: str


@dataclass(frozen=True)
class CacheUse:
    """What `use_frozen_cache` did: the note for the trial's `sweeper.frozen_cache` tag, the prefix's modules it
    serves (none without a cache), and the token positions (padding included) this call ran the prefix over to
    build the cache: 0 when the cache was reused, or not used."""

    note: str
    modules: tuple[nn.Module, ...] = ()
    fill_tokens: int = 0


def frozen_prefix(backbone: PreTrainedModel, config: TrialConfig) -> Prefix | str:
    """The prefix `config`'s method leaves frozen in `backbone` (before the method is applied), or why none."""
    if config.cache_frozen == "off":
        return "off (cache_frozen: off)"
    if config.quantization != "none":
        return f"off: quantization {config.quantization} (its GPU kernels' states were not checked cached)"
    settings = getattr(config, config.method, None)
    layers = getattr(settings, "layers", None)
    if layers is None:  # full fine-tuning, or a method that is not placed by layer
        return f"off: {config.method} trains every layer"
    try:
        chosen = select_layers(backbone, layers)
        targets = getattr(settings, "targets", None)
        if targets:
            where = {module.name: module.layer for module in weight_modules(backbone)}
            placed = [where[name] for name in resolve_targets(backbone, targets, layers)]
            if None in placed:
                return f"off: {config.method}.targets names a module outside the numbered layers"
            chosen = sorted(set(placed))  # type: ignore[arg-type]
    except MethodError as error:
        return f"off: {error}"
    first = min(chosen)
    model_type = backbone.config.model_type
    if backbone.config.is_encoder_decoder:
        encoder_layers = count_layers(backbone.get_encoder())
        if first < encoder_layers:
            return f"off: {config.method} trains encoder layer {first}; only a wholly frozen encoder is cached"
        kind, first = "encoder", encoder_layers
    elif model_type in ROTARY_DECODERS:
        if config.task != "jitdp":
            return "off: a decoder-only model generates messages through its frozen layers (each new token)"
        if first == 0:
            return f"off: {config.method} trains layer 0"
        kind = "decoder"
    elif model_type not in ENCODERS or not hasattr(encoder_of(backbone), "embeddings"):
        return f"off: no frozen-prefix cache for {model_type} models (only {', '.join(ENCODERS)} and encoder-decoders)"
    elif first == 0:
        return f"off: {config.method} trains layer 0"
    else:
        kind = "layers"
    return Prefix(kind, first, weights_digest(frozen_modules(backbone, kind, first)))


def use_frozen_cache(model: TrainableModel, plan: Prefix | str, config: TrialConfig,
                     splits: list[list[EncodedCommit]], encoding_key: str, pad_id: int, device: torch.device,
                     check_trained: bool = True) -> CacheUse:
    """Serve `model`'s frozen prefix from the cache (built if missing) for every commit of `splits`: what was used,
    or why nothing was, and what building it cost (`CacheUse`)."""
    if isinstance(plan, str):
        return CacheUse(plan)
    hf = model.get_base_model() if hasattr(model, "get_base_model") else model
    if check_trained:
        stray = trained_below(hf, plan.layer)
        if stray:
            return CacheUse(f"off: {stray} trains below layer {plan.layer}")
    rows = distinct_rows([item for items in splits for item in items], pad_id)
    hidden = hf.config.d_model if hasattr(hf.config, "d_model") else hf.config.hidden_size
    precision = resolve_precision(config.precision, device)
    dtype = STORAGE[precision]
    size = sum(len(item.input_ids) for item in rows.values()) * hidden * torch.finfo(dtype).bits // 8
    room = allowed_bytes()
    if size > room:
        return CacheUse(f"off: the cache would take {size / 2**30:.2f} GB, more than the {room / 2**30:.2f} GB "
                        f"allowed (half the free disk, at most ${BUDGET_VARIABLE}, default {DEFAULT_BUDGET_GB:g})")
    key = digest({"format": FORMAT, "encoding": encoding_key, "prefix": [plan.kind, plan.layer],
                  "model": [hf.config.model_type, type(hf).__name__, getattr(hf.config, "_attn_implementation", "")],
                  "weights": plan.weights, "storage": str(dtype), "precision": precision,
                  "device": device_name(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
                  "batch": PREFIX_BATCH})
    filled: list[int] = []
    folder, built = cached_folder("frozen", key, lambda into: filled.append(
        build(into, hf, plan, rows, config, pad_id, device, dtype, hidden)),
        about={"backbone": config.backbone, "data": config.data.path, "layer": str(plan.layer)})
    states = FrozenStates.open(folder, rows, dtype, hidden)
    serve(hf, plan, states, pad_id)
    note = f"layer {plan.layer}: {'built' if built else 'reused'} {key[:12]} ({size / 2**20:.1f} MB {precision})"
    return CacheUse(note, tuple(frozen_modules(hf, plan.kind, plan.layer)), sum(filled))


def encoder_of(hf: PreTrainedModel) -> nn.Module:
    """The module that holds the embeddings and layers: the base model (`roberta`) or the encoder."""
    return hf.get_encoder() if hf.config.is_encoder_decoder else getattr(hf, hf.base_model_prefix)


def frozen_modules(hf: PreTrainedModel, kind: str, layer: int) -> list[nn.Module]:
    """The modules of a prefix (`Prefix.kind`, `Prefix.layer`): what the cached states are computed with."""
    encoder = encoder_of(hf)
    if kind == "encoder":
        return [encoder]
    if kind == "decoder":
        return [encoder.embed_tokens, encoder.rotary_emb, *encoder.layers[:layer]]
    return [encoder.embeddings, *encoder.encoder.layer[:layer]]


def trained_below(hf: PreTrainedModel, layer: int) -> str | None:
    """The first trainable parameter that is neither in a layer at or above `layer` nor in the head; None if none."""
    prefixes = {module.name[: len(module.name) - len(module.local) - 1]: module.layer
                for module in weight_modules(hf) if module.layer is not None}
    heads = tuple(f"{name}." for name in head_names(hf))
    for name, parameter in hf.named_parameters():
        if not parameter.requires_grad or name.startswith(heads):
            continue
        placed = next((number for prefix, number in prefixes.items() if name.startswith(prefix + ".")), None)
        if placed is None or placed < layer:
            return name
    return None


def distinct_rows(items: list[EncodedCommit], pad_id: int) -> dict[tuple[int, ...], EncodedCommit]:
    """One item per distinct input, keyed by its token ids without trailing padding (as a batch row shows them)."""
    rows: dict[tuple[int, ...], EncodedCommit] = {}
    for item in items:
        rows.setdefault(unpadded(item.input_ids, pad_id), item)
    return rows


def unpadded(ids: list[int], pad_id: int) -> tuple[int, ...]:
    end = len(ids)
    while end and ids[end - 1] == pad_id:
        end -= 1
    return tuple(ids[:end])


def budget_bytes() -> int:
    """The frozen-prefix cache's budget on this node: `$SWEEPER_FROZEN_CACHE_GB`, 20 GB by default. A sweep trims
    the cache to it before its first trial, least recently used entries first (`trim_to_budget`)."""
    return int(float(os.environ.get(BUDGET_VARIABLE, DEFAULT_BUDGET_GB)) * 2**30)


def allowed_bytes() -> int:
    """What one new entry may take: half the free disk under `$SWEEPER_CACHE`, at most the budget."""
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    return min(shutil.disk_usage(root).free // 2, budget_bytes())


def trim_to_budget() -> list[Entry]:
    """Remove the least recently used frozen-prefix entries until the rest fit the budget; the removed ones."""
    return trim(entries(kinds=("frozen",)), max_size=budget_bytes())


def weights_digest(modules: list[nn.Module]) -> str:
    """A hash of every parameter and buffer the frozen prefix computes with: names, shapes, dtypes and a CRC-32 of
    each tensor's bytes (a checksum, several times faster than a cryptographic hash on hundreds of MB of weights)."""
    hashed = hashlib.sha256()
    for module in modules:
        for name, tensor in module.state_dict().items():
            data = tensor.detach().to("cpu").contiguous()
            checksum = zlib.crc32(data.view(-1).view(torch.uint8).numpy()) if data.numel() else 0
            hashed.update(f"{name}:{data.dtype}:{tuple(data.shape)}:{checksum};".encode())
    return hashed.hexdigest()


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


@contextmanager
def forwards(modules: list[nn.Module], forward: Any) -> Iterator[None]:
    """`modules` run `forward` instead of their own inside the block."""
    for module in modules:
        module.forward = forward
    try:
        yield
    finally:
        for module in modules:
            del module.forward


def passthrough(hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor]:
    """A layer that returns its input, as a layer's output tuple."""
    return (hidden_states,)


def identity(hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """A decoder layer (or final norm) that returns its input, as such layers return their output: alone."""
    return hidden_states


def upper_modules(base: nn.Module, plan: Prefix) -> tuple[list[nn.Module], Any]:
    """What runs above the prefix while it is built, and what they run instead: nothing for a whole encoder; the
    layers at and above `plan.layer` (and a decoder's final norm) pass their input through."""
    if plan.kind == "encoder":
        return [], passthrough
    if plan.kind == "decoder":
        return [*base.layers[plan.layer:], base.norm], identity
    return list(base.encoder.layer[plan.layer:]), passthrough


@torch.no_grad()
def build(folder: Path, hf: PreTrainedModel, plan: Prefix, rows: dict[tuple[int, ...], EncodedCommit],
          config: TrialConfig, pad_id: int, device: torch.device, dtype: torch.dtype, hidden: int) -> int:
    """Run the frozen prefix in eval mode over every distinct input, in fixed batches, writing the states of each
    input's tokens to `states.npy` (row i at `index[i]`); returns the token positions run, padding included."""
    items = list(rows.values())
    lengths = np.array([len(item.input_ids) for item in items], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    storage = np.lib.format.open_memmap(folder / STATES, mode="w+", dtype=numpy_dtype(dtype),
                                        shape=(int(lengths.sum()), hidden))
    encoder = encoder_of(hf)
    modes = [(module, module.training) for module in hf.modules()]
    hf.eval()
    upper, stand_in = upper_modules(encoder, plan)
    tokens = 0
    try:
        with forwards(upper, stand_in), autocast(config, device):
            for batch in length_bucketed_batches(items, PREFIX_BATCH, seed=None):
                inputs = collate([items[index] for index in batch], pad_id)
                tokens += int(inputs["input_ids"].numel())
                output = encoder(input_ids=inputs["input_ids"].to(device),
                                 attention_mask=inputs["attention_mask"].to(device), return_dict=True)
                states = output.last_hidden_state.to(dtype).cpu()
                for row, index in enumerate(batch):
                    storage[offsets[index]:offsets[index] + lengths[index]] = as_numpy(states[row, :lengths[index]])
    finally:
        for module, training in modes:
            module.training = training
    storage.flush()
    del storage
    np.save(folder / INDEX, np.stack([offsets, lengths], axis=1))
    (folder / META).write_text(json.dumps({"kind": plan.kind, "layer": plan.layer, "rows": len(items),
                                           "hidden": hidden, "dtype": str(dtype)}))
    return tokens


def numpy_dtype(dtype: torch.dtype) -> Any:
    """NumPy has no bfloat16: such states are stored as their 16 bits."""
    return np.uint16 if dtype == torch.bfloat16 else torch.empty(0, dtype=dtype).numpy().dtype


def as_numpy(tensor: torch.Tensor) -> np.ndarray:
    return (tensor.view(torch.uint16) if tensor.dtype == torch.bfloat16 else tensor).numpy()


@dataclass
class FrozenStates:
    """The cached states of every distinct input of a trial, memory-mapped, found by the input's token ids."""

    rows: dict[tuple[int, ...], int]
    index: np.ndarray  # (rows, 2): offset and length of each row in `values`
    values: np.ndarray  # (tokens, hidden), memory-mapped
    dtype: torch.dtype

    @classmethod
    def open(cls, folder: Path, rows: dict[tuple[int, ...], EncodedCommit], dtype: torch.dtype,
             hidden: int) -> "FrozenStates":
        index = np.load(folder / INDEX)
        values = np.load(folder / STATES, mmap_mode="r")
        lengths = [len(item.input_ids) for item in rows.values()]
        if index.shape[0] != len(lengths) or index[:, 1].tolist() != lengths or values.shape[1] != hidden:
            raise RuntimeError(f"frozen cache {folder} does not match this trial's inputs: delete it")
        return cls({ids: position for position, ids in enumerate(rows)}, index, values, dtype)

    def batch(self, input_ids: torch.Tensor, pad_id: int, dtype: torch.dtype) -> torch.Tensor:
        """(batch, width, hidden) states for a batch of right-padded inputs; zeros at the padding."""
        width = input_ids.shape[1]
        out = torch.zeros((input_ids.shape[0], width, self.values.shape[1]), dtype=self.dtype)
        for row, ids in enumerate(input_ids.tolist()):
            position = self.rows.get(unpadded(ids, pad_id))
            if position is None:
                raise RuntimeError("the frozen-prefix cache has no states for an input of this batch "
                                   "(set cache_frozen: off to train without it)")
            offset, length = self.index[position]
            stored = torch.from_numpy(np.array(self.values[offset:offset + length]))
            out[row, :length] = stored.view(torch.bfloat16) if self.dtype == torch.bfloat16 else stored
        return out.to(device=input_ids.device, dtype=dtype)


def serve(hf: PreTrainedModel, plan: Prefix, states: FrozenStates, pad_id: int) -> None:
    """Make `hf`'s frozen prefix return the cached states: the embeddings (or the encoder) look the batch's inputs
    up, the frozen layers below pass them through."""
    encoder = encoder_of(hf)
    dtype = next(encoder.parameters()).dtype
    if plan.kind == "encoder":
        def cached_encoder(input_ids: torch.Tensor, *args: Any, return_dict: bool | None = True,
                           **kwargs: Any) -> Any:
            hidden = states.batch(input_ids, pad_id, dtype)
            return BaseModelOutput(last_hidden_state=hidden) if return_dict is not False else (hidden,)

        encoder.forward = cached_encoder
        return
    if plan.kind == "decoder":
        encoder.embed_tokens.forward = lambda input_ids: states.batch(input_ids, pad_id, dtype)
        for layer in encoder.layers[:plan.layer]:
            layer.forward = identity
        return
    encoder.embeddings.forward = lambda input_ids=None, **kwargs: states.batch(input_ids, pad_id, dtype)
    for layer in encoder.encoder.layer[:plan.layer]:
        layer.forward = passthrough
