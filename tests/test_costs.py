"""A trial's own costs: the peak memory reset per trial, and the FLOPs estimate on models counted by hand."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import nn

from sweeper.backbone import load_classifier
from sweeper.config import TrialConfig
from sweeper.costs import (FlopParameters, flop_parameters, peak_memory_mb, reset_peak_memory, train_flops,
                           training_tokens)
from sweeper.methods import apply_method

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
