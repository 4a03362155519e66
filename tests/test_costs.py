"""A trial's own costs: the peak memory reset per trial, and the FLOPs estimate on models counted by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from harness import fresh_cache, small_trial
from sweeper.backbone import load_classifier
from sweeper.cache import encoded
from sweeper.config import TrialConfig
from sweeper.costs import (FlopParameters, flop_parameters, peak_memory_mb, reset_peak_memory, train_flops,
                           training_tokens)
from sweeper.methods import apply_method
from sweeper.recipe import prepare_data
from sweeper.trial import run_trial

CPU = torch.device("cpu")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the per-trial CPU peak needs Linux's clear_refs")
def test_peak_resets_to_what_is_alive() -> None:
    assert reset_peak_memory(CPU)
    before = peak_memory_mb(CPU)
    block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
    with_block = peak_memory_mb(CPU)
    del block
    assert reset_peak_memory(CPU)
    after = peak_memory_mb(CPU)
    assert with_block - before > 60  # the peak saw the block
    assert with_block - after > 60  # and forgot it once it was freed and the peak reset


def tiny() -> nn.Sequential:
    """Embedding(10, 4) -> Linear(4, 3) -> Linear(3, 2): 40 lookup weights, 15 + 8 dense parameters."""
    return nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 3), nn.Linear(3, 2))


def test_flop_parameters_by_hand() -> None:
    model = tiny()
    assert flop_parameters(model) == FlopParameters(forward=23, backward_inputs=23, trained=23)
    model[0].requires_grad_(False)
    assert flop_parameters(model) == FlopParameters(forward=23, backward_inputs=23, trained=23)
    model[1].requires_grad_(False)  # only the top layer trains: no gradient needs to reach the first
    assert flop_parameters(model) == FlopParameters(forward=23, backward_inputs=8, trained=8)
    assert train_flops(model, tokens=100) == 2 * (23 + 8 + 8) * 100
    model.requires_grad_(False)
    assert train_flops(model, tokens=100) == 2 * 23 * 100


def test_full_fine_tuning_is_about_6NT_and_lora_about_4NT() -> None:
    head = sum(p.numel() for p in load_classifier("embedded").classifier.parameters())
    counts = {method: flop_parameters(apply_method(load_classifier("embedded"), TrialConfig(method=method)))
              for method in ("full", "lora")}
    full, lora = counts["full"], counts["lora"]
    assert full.forward == full.backward_inputs == full.trained
    assert lora.forward - full.forward == lora.trained - head  # the low-rank matrices; PEFT's frozen head copy not
    assert 0.95 * full.forward < lora.backward_inputs < full.forward  # LoRA in every layer: gradients reach layer 0
    assert lora.trained < 0.05 * full.trained


def test_training_tokens_count_padding_and_decoder_targets() -> None:
    batch = {"input_ids": torch.zeros(4, 30, dtype=torch.long), "labels": torch.zeros(4, 12, dtype=torch.long)}
    assert training_tokens(batch, encoder_decoder=True) == 4 * 30 + 4 * 12
    assert training_tokens(batch, encoder_decoder=False) == 4 * 30
    assert training_tokens({"input_ids": batch["input_ids"], "labels": torch.zeros(4)}, encoder_decoder=True) == 120


def test_a_cached_prefix_counts_once_for_its_fill_not_in_every_step() -> None:
    model = tiny()
    model[:2].requires_grad_(False)  # the embedding and first layer frozen, served from a cache
    assert flop_parameters(model, [model[0], model[1]]) == FlopParameters(forward=8, backward_inputs=8, trained=8)
    assert train_flops(model, tokens=100, cached=[model[0], model[1]], fill_tokens=30) == \
        2 * (8 + 8 + 8) * 100 + 2 * 15 * 30
    assert train_flops(model, tokens=100, cached=[model[0], model[1]]) == 2 * (8 + 8 + 8) * 100  # cache reused
    assert train_flops(model, tokens=100) == 2 * (23 + 8 + 8) * 100  # no cache: the layer runs every step


def test_a_trial_on_the_frozen_cache_is_charged_what_ran(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWEEPER_CACHE", str(fresh_cache(tmp_path / "cache")))
    encoded._recent.clear()
    config = small_trial("lora", **{"data.sample": 120, "data.max_length": 32, "lora.layers": "1"})
    off = run_trial(config.with_overrides({"cache_frozen": "off"}))
    built = run_trial(config)
    reused = run_trial(config)
    assert built.tags["sweeper.frozen_cache"].startswith("layer 1: built")
    assert reused.tags["sweeper.frozen_cache"].startswith("layer 1: reused")
    hf = apply_method(load_classifier("embedded"), config).get_base_model()
    prefix = [hf.roberta.embeddings, hf.roberta.encoder.layer[0]]
    every, served = flop_parameters(hf), flop_parameters(hf, prefix)
    tokens = off.costs["train_flops"] / (2 * (every.forward + every.backward_inputs + every.trained))
    assert tokens == int(tokens) > 0
    assert reused.costs["train_flops"] == 2 * (served.forward + served.backward_inputs + served.trained) * tokens
    fill = (built.costs["train_flops"] - reused.costs["train_flops"]) / (2 * (every.forward - served.forward))
    data = prepare_data(config)
    commits = {tuple(item.input_ids) for item in data.train + data.valid + data.test}
    longest = max(map(len, commits))  # a fill batch is padded to its longest input
    assert fill == int(fill) and sum(map(len, commits)) <= fill <= len(commits) * longest
