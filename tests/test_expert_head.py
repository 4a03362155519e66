"""The expert-feature head with every method on the embedded backbone: it uses the features, trains, saves, loads."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    BartConfig,
    BertConfig,
    DistilBertConfig,
    PreTrainedModel,
)

from sweeper.backbone import load_classifier
from sweeper.config import TrialConfig
from sweeper.data.batching import collate
from sweeper.data.encoding import EncodedCommit, with_features
from sweeper.errors import MethodError
from sweeper.methods import TrainableModel, apply_method, count_parameters, save_trained
from sweeper.tasks.expert_head import ConcatHead, expert_features, install_expert_head, load_with_expert_head

METHODS = ["full", "adapter", "lora", "ia3"]
INPUTS = torch.randint(5, 8000, (4, 16), generator=torch.Generator().manual_seed(0))
LABELS = torch.tensor([0, 1, 0, 1])
FEATURES = torch.randn(4, 14, generator=torch.Generator().manual_seed(1))


def logits(model: torch.nn.Module, features: torch.Tensor, inputs: torch.Tensor = INPUTS) -> torch.Tensor:
    with torch.no_grad(), expert_features(model, features):
        return model.eval()(input_ids=inputs).logits


def trained_head(model: torch.nn.Module) -> ConcatHead:
    """The head copy that trains (PEFT also holds a frozen original)."""
    heads = [m for m in model.modules() if isinstance(m, ConcatHead) and m.out_proj.weight.requires_grad]
    assert len(heads) == 1
    return heads[0]


def train_steps(model: TrainableModel, steps: int = 3) -> None:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        with expert_features(model, FEATURES):
            loss = torch.nn.functional.cross_entropy(model(input_ids=INPUTS).logits, LABELS)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


@dataclass
class Trained:
    config: TrialConfig
    model: TrainableModel
    before: dict[str, torch.Tensor]  # every parameter right after apply_method
    head_before: dict[str, torch.Tensor]
    directory: Path


@pytest.fixture(scope="module", params=METHODS)
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """The embedded backbone with a ConcatHead, the method applied, three AdamW steps, saved."""
    config = TrialConfig(method=request.param)
    torch.manual_seed(0)
    model = load_classifier("embedded")
    install_expert_head(model)
    model = apply_method(model, config)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    head_before = copy.deepcopy(trained_head(model).state_dict())
    train_steps(model)
    directory = tmp_path_factory.mktemp(request.param)
    save_trained(model, config, directory)
    return Trained(config, model, before, head_before, directory)


@pytest.mark.slow  # its fixture trains the embedded backbone: 1-3 s per method
def test_output_depends_on_the_features(trained: Trained) -> None:
    assert not torch.allclose(logits(trained.model, FEATURES), logits(trained.model, FEATURES + 1.0))
    assert torch.equal(logits(trained.model, FEATURES), logits(trained.model, FEATURES.clone()))


@pytest.mark.slow  # its fixture trains the embedded backbone: 1-3 s per method
def test_training_changes_the_head_and_leaves_the_frozen_backbone(trained: Trained) -> None:
    head = trained_head(trained.model).state_dict()
    assert all(not torch.equal(head[key], trained.head_before[key]) for key in head)
    params = dict(trained.model.named_parameters())
    frozen = [name for name, p in params.items() if not p.requires_grad]
    if trained.config.method == "full":
        assert not frozen
    else:
        assert sum(params[name].numel() for name in frozen) > 1_000_000  # the encoder
        assert all(torch.equal(params[name], trained.before[name]) for name in frozen)


@pytest.mark.slow  # its fixture trains the embedded backbone: 1-3 s per method
def test_save_then_load_on_a_fresh_backbone_gives_identical_logits(trained: Trained) -> None:
    loaded = load_with_expert_head(load_classifier("embedded"), trained.config, trained.directory)
    assert torch.equal(logits(loaded, FEATURES), logits(trained.model, FEATURES))


@pytest.mark.slow  # its fixture trains the embedded backbone: 1-3 s per method
def test_trainable_count_includes_the_head(trained: Trained) -> None:
    fresh = load_classifier("embedded")
    standard_head = sum(p.numel() for p in fresh.classifier.parameters())
    hidden = fresh.config.hidden_size
    plain = apply_method(fresh, trained.config)
    concat_head = (14 * hidden + hidden) + (2 * hidden * 2 + 2)
    assert count_parameters(trained.model)[0] - count_parameters(plain)[0] == concat_head - standard_head
    assert sum(p.numel() for p in trained_head(trained.model).parameters()) == concat_head


def test_features_are_required_and_cleared() -> None:
    model = load_classifier("embedded")
    install_expert_head(model)
    with pytest.raises(RuntimeError, match="without expert features"):
        model(input_ids=INPUTS)
    with pytest.raises(ValueError, match=r"expected \(4, 14\)"), expert_features(model, FEATURES[:, :3]):
        model(input_ids=INPUTS)
    assert model.classifier.features is None
    with pytest.raises(MethodError, match="install_expert_head"):
        with expert_features(load_classifier("embedded"), FEATURES):
            pass


def tiny_bert(seed: int = 0) -> PreTrainedModel:
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(
        BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64))


@pytest.mark.parametrize("method", ["full", "lora"])
def test_bert_pooled_head_round_trip(method: str, tmp_path: Path) -> None:
    backbone = tmp_path / "bert"
    tiny_bert(seed=1).save_pretrained(backbone)
    config = TrialConfig(method=method)
    model = AutoModelForSequenceClassification.from_pretrained(backbone)
    install_expert_head(model)
    model = apply_method(model, config)
    inputs = INPUTS % 100
    assert not torch.allclose(logits(model, FEATURES, inputs), logits(model, -FEATURES, inputs))
    save_trained(model, config, tmp_path / "out")
    fresh = AutoModelForSequenceClassification.from_pretrained(backbone)
    loaded = load_with_expert_head(fresh, config, tmp_path / "out")
    assert torch.equal(logits(loaded, FEATURES, inputs), logits(model, FEATURES, inputs))


@pytest.mark.parametrize("config, family", [
    (BartConfig(vocab_size=100, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
                decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64), "bart"),
    (DistilBertConfig(vocab_size=100, dim=32, n_layers=1, n_heads=4, hidden_dim=64), "distilbert"),
])
def test_unsupported_families_are_refused(config, family: str) -> None:
    with pytest.raises(MethodError, match=rf"supports roberta, .*, qwen2, .* backbones, not '{family}'"):
        install_expert_head(AutoModelForSequenceClassification.from_config(config))


def test_collate_returns_features_only_when_items_carry_them() -> None:
    items = [EncodedCommit("a", [0, 7, 2], 1), EncodedCommit("b", [0, 2], 0)]
    assert "features" not in collate(items, pad_id=1)
    batch = collate(with_features(items, [[1.5] * 14, [-2.0] * 14]), pad_id=1)
    assert batch["features"].dtype == torch.float32 and batch["features"].tolist() == [[1.5] * 14, [-2.0] * 14]
    with pytest.raises(ValueError, match="different numbers of features"):
        collate([with_features(items[:1], [[1.0] * 14])[0], items[1]], pad_id=1)
    with pytest.raises(ValueError, match="2 encoded commits but 1 feature rows"):
        with_features(items, [[1.0] * 14])
