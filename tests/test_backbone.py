"""The embedded backbone: built once, loads as a classifier, learned something, builds deterministically."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import RobertaForMaskedLM

from sweeper.backbone import embedded, embedded_backbone_dir, load_classifier, load_tokenizer, resolve_backbone
from sweeper.data.diff import ADD_MARKER, DEL_MARKER
from sweeper.errors import SweeperError


@pytest.fixture(scope="session")
def backbone_dir() -> Path:
    """The embedded backbone in the default cache: built by the first test session, reused after."""
    return embedded_backbone_dir()


@pytest.mark.slow
def test_second_call_returns_the_folder_without_building(
    backbone_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_build(folder: Path, steps: int = 0) -> None:
        raise AssertionError("rebuilt the embedded backbone")

    monkeypatch.setattr(embedded, "build_backbone", no_build)
    started = time.monotonic()
    assert embedded_backbone_dir() == backbone_dir
    assert time.monotonic() - started < 1.0
    assert resolve_backbone("embedded") == str(backbone_dir)


@pytest.mark.slow
def test_loads_as_a_classifier_with_only_a_new_head(backbone_dir: Path) -> None:
    model = load_classifier("embedded", num_labels=3)
    assert model.config.num_labels == 3
    assert model.config.hidden_size == 128 and model.config.num_hidden_layers == 4
    assert model.config.hidden_dropout_prob == pytest.approx(0.1)
    _, info = type(model).from_pretrained(backbone_dir, num_labels=2, output_loading_info=True)
    assert info["missing_keys"] and all(key.startswith("classifier.") for key in info["missing_keys"])


@pytest.mark.slow
def test_tokenizer_keeps_the_markers_whole(backbone_dir: Path) -> None:
    tokenizer = load_tokenizer("embedded")
    ids = tokenizer(f"fix the parser {ADD_MARKER} x = 1 {DEL_MARKER} x = 2")["input_ids"]
    marker_ids = tokenizer.convert_tokens_to_ids([ADD_MARKER, DEL_MARKER])
    assert tokenizer.unk_token_id not in marker_ids
    assert [token for token in ids if token in marker_ids] == marker_ids
    assert tokenizer.model_max_length == 512
    assert 7000 <= len(tokenizer) <= 8100


@pytest.mark.slow
def test_pretrained_beats_random_and_unigram_on_heldout_commits(backbone_dir: Path) -> None:
    tokenizer = load_tokenizer("embedded")
    train, heldout = embedded.bundled_texts()
    heldout_windows = embedded.chunk(tokenizer, heldout)
    pretrained = RobertaForMaskedLM.from_pretrained(backbone_dir)
    torch.manual_seed(1)
    fresh = RobertaForMaskedLM(pretrained.config)
    pretrained_loss = embedded.mlm_loss(pretrained, tokenizer, heldout_windows)
    assert pretrained_loss < embedded.mlm_loss(fresh, tokenizer, heldout_windows) - 1.5

    # Beating token frequencies alone shows the model uses the context.
    special = torch.tensor(tokenizer.all_special_ids)
    train_ids = embedded.chunk(tokenizer, train)
    counts = torch.bincount(train_ids[~torch.isin(train_ids, special)], minlength=len(tokenizer)) + 0.5
    heldout_ids = heldout_windows[~torch.isin(heldout_windows, special)]
    unigram_loss = -(counts / counts.sum()).log()[heldout_ids].mean().item()
    assert pretrained_loss < unigram_loss - 0.2


@pytest.mark.slow  # two 3-step builds: ~17 s on 2 cores
def test_tiny_build_is_deterministic_and_keeps_the_callers_rng(tmp_path: Path) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    embedded.build_backbone(tmp_path / "a", steps=3)
    assert torch.equal(torch.rand(3), expected)
    embedded.build_backbone(tmp_path / "b", steps=3)

    weights_a = load_file(tmp_path / "a" / "model.safetensors")
    weights_b = load_file(tmp_path / "b" / "model.safetensors")
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[name], weights_b[name]) for name in weights_a)
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()


def test_other_names_pass_through() -> None:
    assert resolve_backbone("microsoft/codebert-base") == "microsoft/codebert-base"


@pytest.mark.parametrize("load", [load_tokenizer, load_classifier])
def test_unloadable_backbone_is_a_one_line_error(load: Callable[[str], object], tmp_path: Path) -> None:
    with pytest.raises(SweeperError, match="a hub name \\(needs internet\\) or a local folder") as error:
        load(str(tmp_path))
    assert str(tmp_path) in str(error.value) and "\n" not in str(error.value)
