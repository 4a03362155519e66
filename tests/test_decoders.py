"""Decoder-only backbones (Qwen2 and Llama shapes, random weights, built offline): every method on both tasks,
the expert-feature head, pooling that does not depend on the padding side, a pad token where the tokenizer has
none, generation without transformers' right-padding warning, and exact repeats."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from decoders import FAMILIES, tiny_decoder
from harness import fresh_cache, predict_in_fresh_process, small_trial
from sweeper.predictions import read_predictions
from sweeper.tracking.schema import PREDICTIONS_FILE
from sweeper.backbone import load_classifier, load_generator, load_tokenizer
from sweeper.cache.frozen import frozen_prefix, use_frozen_cache
from sweeper.data.batching import collate
from sweeper.methods import apply_method
from sweeper.tasks.defects import model_inputs, predict
from sweeper.tasks.expert_head import ConcatHead, expert_features, install_expert_head
from sweeper.tasks.messages import MessageGeneration
from sweeper.recipe import prepare_data
from sweeper.trial import run_trial

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def backbones(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A Qwen2 with a pad token and a Llama whose tokenizer has none (as Llama's and GPT-2's have not)."""
    folder = tmp_path_factory.mktemp("decoders")
    return {"qwen2": tiny_decoder(folder / "qwen2", "qwen2"),
            "llama": tiny_decoder(folder / "llama", "llama", pad=False)}


def test_a_tokenizer_without_a_pad_token_pads_with_its_end_token(backbones: dict[str, str]) -> None:
    tokenizer = load_tokenizer(backbones["llama"])
    assert tokenizer.pad_token_id == tokenizer.eos_token_id is not None
    assert load_classifier(backbones["llama"]).config.pad_token_id == tokenizer.pad_token_id
    qwen = load_tokenizer(backbones["qwen2"])
    assert load_classifier(backbones["qwen2"]).config.pad_token_id == qwen.pad_token_id != qwen.eos_token_id


def left_padded(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same right-padded batch with each row's padding moved to its left."""
    moved = dict(batch)
    for key in ("input_ids", "attention_mask"):
        rows = []
        for values, mask in zip(batch[key], batch["attention_mask"]):
            length = int(mask.sum())
            rows.append(torch.cat([values[length:], values[:length]]))
        moved[key] = torch.stack(rows)
    return moved


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("features", ["none", "expert"])
def test_padding_side_does_not_change_a_commits_score(backbones: dict[str, str], family: str, features: str) -> None:
    config = small_trial("lora", backbone=backbones[family], features=features, **{"data.sample": 60})
    data = prepare_data(config)
    torch.manual_seed(0)
    model = apply_method(data.task.load_model(config.backbone), config).eval()
    items = sorted(data.valid, key=lambda item: len(item.input_ids))[::4][:8]
    right = collate(items, data.task.pad_id)
    assert len({len(item.input_ids) for item in items}) > 1  # rows really are padded
    scores = {}
    for side, batch in (("right", right), ("left", left_padded(right))):
        with torch.no_grad(), expert_features(model, batch["features"]) if features == "expert" else nullcontext():
            scores[side] = model(**model_inputs(model, batch)).logits
    torch.testing.assert_close(scores["left"], scores["right"], rtol=0, atol=1e-5)
    alone = torch.cat([model(**model_inputs(model, collate([item], data.task.pad_id))).logits
                       for item in items]) if features == "none" else scores["right"]
    torch.testing.assert_close(alone, scores["right"], rtol=0, atol=1e-5)  # the last real token, not a pad


def nullcontext():  # noqa: ANN201 (the standard one, named here so the parametrised branch reads evenly)
    from contextlib import nullcontext as standard

    return standard()


def test_the_expert_head_scores_every_token_and_the_model_keeps_the_last_real_ones(backbones: dict[str, str]) -> None:
    model = AutoModelForSequenceClassification.from_pretrained(backbones["qwen2"], num_labels=2)
    head = install_expert_head(model)
    assert head.every_token and model.score is head and isinstance(head, ConcatHead)
    model.eval()
    ids = torch.tensor([[5, 6, 7, 8], [5, 6, 1, 1]])  # the second row right-padded with the pad id, 1
    mask = (ids != 1).long()
    model.config.pad_token_id = 1
    features = torch.randn(2, 14)
    with torch.no_grad(), expert_features(model, features):
        pooled = model(input_ids=ids, attention_mask=mask).logits
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        head.features = features
        every = head(hidden)
    torch.testing.assert_close(pooled, torch.stack([every[0, 3], every[1, 1]]))
    with torch.no_grad(), expert_features(model, -features):
        assert not torch.allclose(model(input_ids=ids, attention_mask=mask).logits, pooled)


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", ["full", "adapter", "lora", "ia3"])
@pytest.mark.parametrize("task", ["jitdp", "cmg"])
def test_every_method_trains_on_both_tasks_and_reloads_exactly(backbones: dict[str, str], family: str, method: str,
                                                                 task: str, tmp_path: Path) -> None:
    expert = {"features": "expert"} if task == "jitdp" and family == "llama" else {}
    config = small_trial(method, task, backbone=backbones[family], **{"data.sample": 120}, **expert)
    result = run_trial(config, tmp_path)
    metric = "auc" if task == "jitdp" else "bleu"
    assert 0 <= result.metrics[metric] <= (1 if task == "jitdp" else 100)
    if method != "full":
        assert result.costs["trainable_percent"] < 30
    assert predict_in_fresh_process(tmp_path) == read_predictions(tmp_path / PREDICTIONS_FILE).values


@pytest.mark.slow
@pytest.mark.parametrize("task", ["jitdp", "cmg"])
def test_a_decoder_trial_repeats_exactly(backbones: dict[str, str], task: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """As `sweeper reproduce` re-runs a trial: defect prediction with its frozen prefix built, then reused."""
    monkeypatch.setenv("SWEEPER_CACHE", str(fresh_cache(tmp_path / "cache")))
    config = small_trial("lora", task, backbone=backbones["llama"], epochs=2, **{"data.sample": 120, "lora.layers": "1"})
    first, again = run_trial(config, tmp_path / "first"), run_trial(config)
    assert first.metrics == again.metrics
    if task == "jitdp":
        assert first.tags["sweeper.frozen_cache"].startswith("layer 1: built")
        assert again.tags["sweeper.frozen_cache"].startswith("layer 1: reused")
    saved = read_predictions(tmp_path / "first" / PREDICTIONS_FILE).values
    assert predict_in_fresh_process(tmp_path / "first") == saved


def test_generation_pads_prompts_with_a_token_that_does_not_end_them(backbones: dict[str, str],
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """The Llama tokenizer pads with its end token, which closes every prompt: transformers would take the prompts
    for right-padded and warn at every evaluation."""
    config = small_trial("lora", "cmg", backbone=backbones["llama"], **{"data.sample": 60})
    data = prepare_data(config)
    task: MessageGeneration = data.task  # type: ignore[assignment]
    assert task.pad_id == task.end_id != task.prompt_pad_id
    model = apply_method(task.load_model(config.backbone), config).eval()
    items = sorted(data.valid, key=lambda item: len(item.input_ids))[::3][:6]
    with caplog.at_level(logging.WARNING, logger="transformers"):
        messages = task.generate(model, items, CPU)
    assert len(messages) == len(items)
    assert not [record for record in caplog.records if "right-padding" in record.getMessage()]
    ids, mask = task.left_padded([task.prompt(item) for item in items])
    assert (ids[:, -1] == task.end_id).all() and (ids[mask == 0] == task.prompt_pad_id).all()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("features", ["none", "expert"])
def test_cached_and_uncached_decoders_give_the_same_logits(backbones: dict[str, str], family: str, features: str,
                                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWEEPER_CACHE", str(fresh_cache(tmp_path / "cache")))
    backbone = tiny_decoder(tmp_path / family, family, pad=family == "qwen2", layers=4)
    config = small_trial("lora", backbone=backbone, features=features, **{"data.sample": 60, "lora.layers": "2-3"})
    data = prepare_data(config)
    scores = {}
    for cache_frozen in ("auto", "off"):
        trial = config.with_overrides({"cache_frozen": cache_frozen})
        torch.manual_seed(0)
        backbone_model = data.task.load_model(trial.backbone)
        plan = frozen_prefix(backbone_model, trial)
        model = apply_method(backbone_model, trial).eval()
        note = use_frozen_cache(model, plan, trial, [data.train, data.valid], data.encoding_key, data.task.pad_id,
                                CPU).note
        assert note.startswith("layer 2: built") if cache_frozen == "auto" else note.startswith("off")
        scores[cache_frozen] = predict(model, data.valid, 16, data.task.pad_id, CPU)
    assert scores["auto"][0] == pytest.approx(scores["off"][0], abs=1e-6)
    assert scores["auto"][1] == pytest.approx(scores["off"][1], rel=1e-6)


def test_decoder_message_generation_trains_without_the_cache(backbones: dict[str, str]) -> None:
    config = small_trial("lora", "cmg", backbone=backbones["qwen2"], **{"lora.layers": "1"})
    assert frozen_prefix(load_generator(config.backbone), config).startswith("off: a decoder-only model generates")
