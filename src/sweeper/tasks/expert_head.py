"""JIT-Fine's expert-feature head (Ni et al., FSE 2022): the commit's 14 change metrics beside its text.

    Linear(14 -> hidden), tanh  ─┐
                                 ├─ concatenate, dropout, Linear(2 * hidden -> classes)
    first-token vector (hidden) ─┘

It replaces the sequence-classification model's own head module (`classifier`) *before* a method is
applied, so every method trains and saves it exactly as it trains and saves any head: `full` with the whole
model, LoRA and IA3 as PEFT's `modules_to_save`, bottleneck adapters in `adapters`' head file. The methods
do not change. A Hugging Face model calls its head with the hidden states only, so the features reach the
head beside the call: `expert_features` sets them on every `ConcatHead` of the model for one forward pass
(PEFT keeps a frozen original of the head beside the trained copy; both see them) and clears them after. Usage::

    model = load_classifier("embedded")
    install_expert_head(model)                               # before apply_method
    model = apply_method(model, TrialConfig(method="lora"))
    with expert_features(model, batch["features"]):         # (batch, 14) float, scaled (FeatureScaler)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    save_trained(model, config, out)
    again = load_with_expert_head(load_classifier("embedded"), config, out)

Supported backbones: the RoBERTa family (`roberta`, `xlm-roberta`, `camembert`, `electra`: CodeBERT,
GraphCodeBERT, UniXcoder), whose head receives the sequence output and reads its first token; BERT
(`bert`), whose head receives the pooled first-token vector; and the decoder-only families (GPT-2, StarCoder,
Llama/CodeLlama, Mistral, Qwen2/Qwen2.5, Qwen3, StarCoder2), whose head scores every token and whose model then
keeps the score of the last token that is not padding: there the head combines the features with every token's
vector, so the score kept is the last token's, pooled as the model pools. Others (BART, T5, DistilBERT)
pool elsewhere or have a head in several modules: `MethodError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import PreTrainedModel

from sweeper.config import TrialConfig
from sweeper.data.features import FEATURE_NAMES
from sweeper.errors import MethodError
from sweeper.methods import TrainableModel, load_trained
from sweeper.backbone.new_decoder import DECODER_ONLY
from sweeper.methods.roles import head_names

SEQUENCE_OUTPUT = ("roberta", "xlm-roberta", "camembert", "electra")  # head gets (batch, tokens, hidden)
POOLED_OUTPUT = ("bert",)  # head gets (batch, hidden): the pooler's first-token vector
EVERY_TOKEN = DECODER_ONLY  # head scores (batch, tokens, hidden); the model keeps the last real token's score
DEFAULT_DROPOUT = 0.1  # JIT-Fine's (RoBERTa's hidden dropout), for configs that name none
NUM_FEATURES = len(FEATURE_NAMES)


class ConcatHead(nn.Module):
    """Expert features through Linear + tanh, concatenated with the first-token vector; dropout; Linear.

    `features` is set for a forward pass by `expert_features`; it is an attribute, not a buffer, so it is
    never saved. The head takes the sequence output (`[:, 0]` is the first token) or a pooled vector; with
    `every_token` it scores each token of the sequence output (a decoder-only model pools the scores after).

        >>> head = ConcatHead(hidden_size=8, num_labels=2, num_features=3).eval()
        >>> head.features = torch.ones(4, 3)
        >>> head(torch.zeros(4, 10, 8)).shape
        torch.Size([4, 2])
    """

    def __init__(self, hidden_size: int, num_labels: int = 2, num_features: int = NUM_FEATURES,
                 dropout: float = DEFAULT_DROPOUT, every_token: bool = False) -> None:
        super().__init__()
        self.every_token = every_token
        self.feature_proj = nn.Linear(num_features, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(2 * hidden_size, num_labels)
        self.features: torch.Tensor | None = None

    def forward(self, hidden_states: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        if self.features is None:
            raise RuntimeError("ConcatHead called without expert features: run the forward pass inside "
                               "`with expert_features(model, batch['features']):`")
        vectors = hidden_states if self.every_token or hidden_states.dim() == 2 else hidden_states[:, 0]
        features = self.features.to(device=vectors.device, dtype=vectors.dtype)
        if features.shape != (vectors.shape[0], self.feature_proj.in_features):
            raise ValueError(f"expert features of shape {tuple(features.shape)} for a batch of {vectors.shape[0]}; "
                             f"expected ({vectors.shape[0]}, {self.feature_proj.in_features})")
        projected = torch.tanh(self.feature_proj(features))
        if vectors.dim() == 3:  # every token: the same features beside each
            projected = projected.unsqueeze(1).expand(-1, vectors.shape[1], -1)
        return self.out_proj(self.dropout(torch.cat([vectors, projected], dim=-1)))


def install_expert_head(model: PreTrainedModel, num_features: int = NUM_FEATURES) -> ConcatHead:
    """Replace the model's classification head by a fresh `ConcatHead` (in place; before `apply_method`).

    Its sizes come from the model's config: hidden size, number of labels, and the classifier's dropout
    (`classifier_dropout`, else `hidden_dropout_prob`, as the head it replaces; JIT-Fine's 0.1 where the config
    names neither). `MethodError` for a model family whose head is not supported (see the module's docstring).
    Returns the new head.
    """
    model_type = model.config.model_type
    supported = SEQUENCE_OUTPUT + POOLED_OUTPUT + EVERY_TOKEN
    if model_type not in supported:
        raise MethodError(f"the expert-feature head supports {', '.join(supported)} "
                          f"backbones, not {model_type!r}: its classification head pools elsewhere or spans several "
                          f"modules; use this backbone without expert features")
    names = head_names(model)
    if len(names) != 1:
        raise MethodError(f"the expert-feature head replaces one head module; this {model_type} model has {names}")
    dropout = getattr(model.config, "classifier_dropout", None)
    if dropout is None:
        dropout = getattr(model.config, "hidden_dropout_prob", DEFAULT_DROPOUT)
    head = ConcatHead(model.config.hidden_size, model.config.num_labels, num_features, dropout,
                      every_token=model_type in EVERY_TOKEN)
    setattr(model, names[0], head)
    return head


@contextmanager
def expert_features(model: nn.Module, features: torch.Tensor) -> Iterator[None]:
    """Give `features` (batch, 14) to every `ConcatHead` in `model` for the forward passes inside the block.

    They are cleared on leaving, even on an error, so a head never reuses another batch's features.

        >>> head = ConcatHead(hidden_size=4, num_features=2)
        >>> with expert_features(head, torch.zeros(1, 2)):
        ...     head.features.shape
        torch.Size([1, 2])
        >>> head.features is None
        True
    """
    heads = [module for module in model.modules() if isinstance(module, ConcatHead)]
    if not heads:
        raise MethodError("the model has no expert-feature head: call install_expert_head before apply_method")
    for head in heads:
        head.features = features
    try:
        yield
    finally:
        for head in heads:
            head.features = None


def batch_features(model: nn.Module, batch: dict[str, torch.Tensor]) -> AbstractContextManager[None]:
    """`expert_features(model, batch["features"])` when the batch carries features (`collate` adds them for
    commits that have them); else nothing, so a model without the head runs as it always did."""
    return expert_features(model, batch["features"]) if "features" in batch else nullcontext()


def load_with_expert_head(base_model: PreTrainedModel, config: TrialConfig, directory: Path,
                          num_features: int = NUM_FEATURES) -> TrainableModel:
    """The trained model of `save_trained` rebuilt on a fresh backbone that gets a `ConcatHead` first (unless it has
    one already, as `DefectPrediction.load_model` gives it).

    Adapters, LoRA and IA3 load their weights (the head's included) into that backbone with their own `load`.
    `full`'s own `load` builds a new model from `directory` with the class's standard head, so here its
    saved weights are loaded into the prepared backbone instead, every key checked. In eval mode.
    """
    if not any(isinstance(module, ConcatHead) for module in base_model.modules()):
        install_expert_head(base_model, num_features)
    if config.method != "full":
        return load_trained(base_model, config, directory)
    state = saved_state(directory)
    missing, unexpected = base_model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise MethodError(f"{directory} does not hold this backbone with an expert-feature head: "
                          f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    return base_model.eval()


def saved_state(directory: Path) -> dict[str, torch.Tensor]:
    """Every tensor `save_pretrained` wrote to `directory` (one `model.safetensors`, or its shards)."""
    single = directory / "model.safetensors"
    if single.exists():
        return load_file(single)
    shards = sorted(directory.glob("model-*-of-*.safetensors"))
    if not shards:
        raise MethodError(f"{directory} has no model.safetensors (or shards) to load a fully fine-tuned model from")
    return {key: tensor for shard in shards for key, tensor in load_file(shard).items()}
