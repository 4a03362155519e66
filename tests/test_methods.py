"""Methods on tiny backbones: trainable counts by hand, role mapping per family, errors, save/load round trips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    AutoModelForSequenceClassification,
    BartConfig,
    BertConfig,
    DistilBertConfig,
    GPT2Config,
    LlamaConfig,
    PretrainedConfig,
    PreTrainedModel,
    RobertaConfig,
    T5Config,
)

from sweeper.config import TrialConfig
from sweeper.errors import MethodError
from sweeper.methods import apply_method, count_parameters, load_trained, save_trained
from sweeper.methods.adapter import _reduction_for
from sweeper.methods.roles import resolve_targets, select_layers

H, FFN, LAYERS = 32, 64, 4  # hidden size, feed-forward size, layers of the tiny RoBERTa
ROBERTA_HEAD = (H * H + H) + (H * 2 + 2)  # classifier.dense + classifier.out_proj = 1122
ADAPTER = lambda b: (H * b + b) + (b * H + H)  # noqa: E731  down-projection + up-projection, with biases


def roberta_config() -> RobertaConfig:
    return RobertaConfig(vocab_size=100, hidden_size=H, num_hidden_layers=LAYERS, num_attention_heads=4,
                         intermediate_size=FFN)


def tiny(config: PretrainedConfig, seed: int = 0) -> PreTrainedModel:
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(config)


def trial(method: str, **settings: Any) -> TrialConfig:
    return TrialConfig(method=method, **({method: settings} if settings else {}))


def trainable(method: str, model: PreTrainedModel | None = None, **settings: Any) -> int:
    return count_parameters(apply_method(model or tiny(roberta_config()), trial(method, **settings)))[0]


# --- hand counts on the tiny RoBERTa (H=32, FFN=64, 4 layers, 2 labels) ---

def test_full_trains_everything() -> None:
    model = tiny(roberta_config())
    total = sum(p.numel() for p in model.parameters())
    assert count_parameters(apply_method(model, trial("full"))) == (total, total)


def test_lora_query_value() -> None:
    r = 4
    per_layer = 2 * r * (H + H)  # A: r x in, B: out x r, on query and on value
    assert trainable("lora", rank=r) == LAYERS * per_layer + ROBERTA_HEAD


def test_lora_total_adds_only_lora_and_the_head_copy() -> None:
    r = 4
    model = tiny(roberta_config())
    backbone = sum(p.numel() for p in model.parameters())
    added = LAYERS * 2 * r * (H + H)
    assert count_parameters(apply_method(model, trial("lora", rank=r)))[1] == backbone + added + ROBERTA_HEAD


@pytest.mark.parametrize("layers, count", [("0-1", 2), ([1, 3], 2), ("0,2-3", 3), ("not 0", 3), ("not 1-3", 1)])
def test_lora_layer_subset(layers: Any, count: int) -> None:
    r = 2
    assert trainable("lora", rank=r, layers=layers) == count * 2 * r * (H + H) + ROBERTA_HEAD


def test_lora_every_role() -> None:
    r = 2
    targets = ["query", "key", "value", "attention_output", "ffn_in", "ffn_out"]
    per_layer = 4 * r * (H + H) + r * (H + FFN) + r * (FFN + H)
    assert trainable("lora", rank=r, targets=targets) == LAYERS * per_layer + ROBERTA_HEAD


def test_dora_adds_a_magnitude_per_output() -> None:
    r = 4
    per_layer = 2 * (r * (H + H) + H)  # LoRA A and B, plus a magnitude vector of size out
    assert trainable("lora", rank=r, dora=True) == LAYERS * per_layer + ROBERTA_HEAD


def test_ia3_scales_outputs_and_feedforward_inputs() -> None:
    per_layer = H + H + FFN  # key and value outputs (H each); ffn_out (output.dense) scales its FFN-sized input
    assert trainable("ia3") == LAYERS * per_layer + ROBERTA_HEAD
    assert trainable("ia3", targets=["value"], feedforward=[], layers="2-3") == 2 * H + ROBERTA_HEAD


# adapters 1.3 with these configs adds exactly the two projections per adapter: no layer norms
# (ln_before/ln_after off), no gate, a constant scaling; it reuses the backbone's layer norms.
@pytest.mark.parametrize("placement, per_layer", [("houlsby", 2), ("attention", 1), ("ffn", 1), ("parallel", 1)])
def test_adapter_counts(placement: str, per_layer: int) -> None:
    b = 8
    assert trainable("adapter", placement=placement, bottleneck=b) == LAYERS * per_layer * ADAPTER(b) + ROBERTA_HEAD


def test_adapter_placement_and_frozen_backbone() -> None:
    def trained(placement: str) -> set[str]:
        model = apply_method(tiny(roberta_config()), trial("adapter", placement=placement, bottleneck=8))
        return {name for name, p in model.named_parameters() if p.requires_grad and "adapters" in name}

    assert trained("attention") and all(".attention.output.adapters." in name for name in trained("attention"))
    assert trained("ffn") and all(".attention." not in name for name in trained("ffn"))
    model = apply_method(tiny(roberta_config()), trial("adapter", bottleneck=8))
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert all(name.startswith("roberta.") and "adapters" not in name for name in frozen)


def test_adapter_layers_left_out_and_reduction_factor() -> None:
    b = 5  # 32 / 5 as a float floors to 4 in `adapters`; the reduction factor is nudged to give 5
    assert trainable("adapter", placement="houlsby", bottleneck=b, layers="not 0-1") == 2 * 2 * ADAPTER(b) + ROBERTA_HEAD
    assert trainable("adapter", placement="ffn", reduction_factor=16) == LAYERS * ADAPTER(H // 16) + ROBERTA_HEAD


def test_reduction_factor_gives_every_bottleneck_exactly() -> None:
    for hidden in (32, 768, 1024):
        assert all(hidden // _reduction_for(hidden, b) == b for b in range(1, hidden + 1))


# --- role mapping per family ---

FAMILIES = {
    "bert": (BertConfig(vocab_size=100, hidden_size=H, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=FFN), 2 * 2 * 4 * (H + H) + (H * 2 + 2)),
    "t5": (T5Config(vocab_size=100, d_model=H, d_kv=8, d_ff=FFN, num_layers=2, num_decoder_layers=2, num_heads=4),
           # encoder self-attention x2 layers, decoder self- and cross-attention x2 layers; q and v each
           (2 + 4) * 2 * 4 * (H + H) + ROBERTA_HEAD),
    "bart": (BartConfig(vocab_size=100, d_model=H, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                        decoder_attention_heads=4, encoder_ffn_dim=FFN, decoder_ffn_dim=FFN, num_labels=2),
             (2 + 4) * 2 * 4 * (H + H) + ROBERTA_HEAD),
    # c_attn is the fused query/key/value projection (H -> 3H): one LoRA per layer; score has no bias
    "gpt2": (GPT2Config(vocab_size=100, n_embd=H, n_layer=2, n_head=4, pad_token_id=0),
             2 * 4 * (H + 3 * H) + H * 2),
    # 2 key/value heads of size 8: v_proj is H -> 16
    "llama": (LlamaConfig(vocab_size=100, hidden_size=H, intermediate_size=FFN, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, pad_token_id=0),
              2 * (4 * (H + H) + 4 * (H + 16)) + H * 2),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_on_query_value_per_family(family: str) -> None:
    config, expected = FAMILIES[family]
    assert trainable("lora", tiny(config), rank=4) == expected


@pytest.mark.parametrize("family", FAMILIES)
def test_every_role_resolves_per_family(family: str) -> None:
    model = tiny(FAMILIES[family][0])
    for role in ("query", "key", "value", "attention_output", "ffn_in", "ffn_out"):
        assert resolve_targets(model, [role], "all")


def test_roles_match_whole_names() -> None:
    model = tiny(roberta_config())
    ffn_out = resolve_targets(model, ["ffn_out"], "all")
    assert ffn_out == [f"roberta.encoder.layer.{i}.output.dense" for i in range(LAYERS)]
    assert resolve_targets(model, ["attention.output.dense"], [1]) == ["roberta.encoder.layer.1.attention.output.dense"]


def test_encoder_decoder_layers_number_decoder_after_encoder() -> None:
    model = tiny(FAMILIES["t5"][0])
    assert resolve_targets(model, ["ffn_out"], [2]) == ["transformer.decoder.block.0.layer.2.DenseReluDense.wo"]


# --- errors ---

def test_unmapped_model_type_names_role_and_type() -> None:
    distil = DistilBertConfig(vocab_size=100, dim=H, n_layers=2, n_heads=4, hidden_dim=FFN)
    with pytest.raises(MethodError, match=r"'query'.*'distilbert'.*q_lin"):
        apply_method(tiny(distil), trial("lora"))
    assert trainable("lora", tiny(distil), rank=2, targets=["q_lin"]) == 2 * 2 * (H + H) + (H * H + H) + (H * 2 + 2)


def test_unknown_module_lists_what_exists() -> None:
    with pytest.raises(MethodError, match=r"'qkv' is neither a role \(query.*\) nor a module of this roberta.*"
                                          r"attention\.self\.query"):
        apply_method(tiny(roberta_config()), trial("lora", targets=["qkv"]))


@pytest.mark.parametrize("layers, problem", [
    ([0, 4], r"\[4\] out of range, the model has layers 0-3"),
    ("2-9", r"\[4, 5, 6, 7, 8, 9\] out of range"),
    ("0..2", "write 'all', a list"),
    ("3-1", "write 'all', a list"),
    ("not 0-3", "selects no layer"),
])
def test_bad_layers(layers: Any, problem: str) -> None:
    with pytest.raises(MethodError, match=problem):
        select_layers(tiny(roberta_config()), layers)


def test_ia3_feedforward_must_be_a_target() -> None:
    with pytest.raises(MethodError, match="ia3.feedforward must be among ia3.targets"):
        apply_method(tiny(roberta_config()), trial("ia3", targets=["key"], feedforward=["ffn_out"]))


# --- save and load ---

@pytest.fixture(scope="module")
def backbone_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny classifier, loaded afresh for each model as a user's backbone would be."""
    path = tmp_path_factory.mktemp("backbone")
    tiny(roberta_config(), seed=1).save_pretrained(path)
    return path


@pytest.mark.parametrize("config", [
    trial("full"), trial("lora", rank=4, dora=True), trial("lora", rank=4, layers="1-2"),
    trial("ia3"), trial("adapter", bottleneck=8, layers="not 0"), trial("adapter", placement="parallel"),
], ids=["full", "dora", "lora", "ia3", "houlsby", "parallel"])
def test_round_trip_gives_identical_logits(config: TrialConfig, backbone_dir: Path, tmp_path: Path) -> None:
    inputs = torch.randint(3, 100, (4, 12))
    labels = torch.tensor([0, 1, 1, 0])
    original = AutoModelForSequenceClassification.from_pretrained(backbone_dir).eval()(input_ids=inputs).logits

    torch.manual_seed(0)
    model = apply_method(AutoModelForSequenceClassification.from_pretrained(backbone_dir), config)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(2):
        model(input_ids=inputs, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    with torch.no_grad():
        trained = model.eval()(input_ids=inputs).logits

    save_trained(model, config, tmp_path)
    fresh = AutoModelForSequenceClassification.from_pretrained(backbone_dir)
    with torch.no_grad():
        loaded = load_trained(fresh, config, tmp_path)(input_ids=inputs).logits
    assert not torch.allclose(trained, original)
    assert torch.equal(loaded, trained)


def test_peft_saves_only_what_trained(tmp_path: Path) -> None:
    config = trial("lora", rank=4)
    save_trained(apply_method(tiny(roberta_config()), config), config, tmp_path)
    keys = load_file(tmp_path / "adapter_model.safetensors").keys()
    assert keys and all("lora_" in key or key.startswith("base_model.model.classifier.") for key in keys)


def test_adapter_saves_adapter_and_head(tmp_path: Path) -> None:
    config = trial("adapter", bottleneck=8)
    save_trained(apply_method(tiny(roberta_config()), config), config, tmp_path)
    assert sorted(load_file(tmp_path / "head.safetensors")) == [
        "classifier.dense.bias", "classifier.dense.weight", "classifier.out_proj.bias", "classifier.out_proj.weight"]
    assert (tmp_path / "adapter_config.json").exists()
