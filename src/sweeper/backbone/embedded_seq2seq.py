"""The embedded default backbone for message generation: a small BART pre-trained offline as a denoiser.

Built once per machine (a minute or two on two CPU cores) into `$SWEEPER_CACHE/embedded-bart-v1`: the same
byte-level BPE tokenizer as the embedded encoder (trained on the same bundled commits, so the same
vocabulary), then a short, seeded denoising pre-training: a third of the tokens of each window are masked
and the decoder writes the window back. Only the bundled JIT-DP commits (Java) are used for the
pre-training, so no CMG commit (Python) is seen before fine-tuning.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from transformers import BartConfig, BartForConditionalGeneration, PreTrainedTokenizerBase

from sweeper.backbone.embedded import (FINE_TUNING_DROPOUT, SEED, bundled_texts, built_once, chunk, pretrain,
                                       train_tokenizer)

NAME = "embedded-bart-v1"
PRETRAINING_DATA = ("jitdp-sample.jsonl.gz",)
MASK_SHARE = 0.3
# Chosen by measurement, like the encoder's: about a minute on two quiet CPU cores (0.16 s a step); batches of
# 8 windows at a learning rate of 1e-3, as the encoder's pre-training.
WINDOW = 64
STEPS = 400


def embedded_seq2seq_dir() -> Path:
    """The embedded encoder-decoder's folder, built on first use."""
    return built_once(NAME, build_seq2seq)


def small_bart_config(tokenizer: PreTrainedTokenizerBase, dropout: float = FINE_TUNING_DROPOUT) -> BartConfig:
    """Hidden 128, 2 encoder and 2 decoder layers, 4 heads: about 1.6 M parameters with the shared embeddings."""
    return BartConfig(
        vocab_size=len(tokenizer),
        d_model=128,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=512,
        decoder_ffn_dim=512,
        max_position_embeddings=512,
        dropout=dropout,
        attention_dropout=0.0,
        activation_dropout=0.0,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id,
        forced_eos_token_id=tokenizer.eos_token_id,
        forced_bos_token_id=None,
    )


def denoising_loss(model: BartForConditionalGeneration, tokenizer: PreTrainedTokenizerBase, windows: torch.Tensor,
                   generator: torch.Generator) -> torch.Tensor:
    """Cross-entropy of writing `windows` back from a copy with `MASK_SHARE` of the ordinary tokens masked."""
    ordinary = ~torch.isin(windows, torch.tensor(tokenizer.all_special_ids))
    masked = ordinary & (torch.rand(windows.shape, generator=generator) < MASK_SHARE)
    inputs = torch.where(masked, tokenizer.mask_token_id, windows)
    labels = torch.where(windows == tokenizer.pad_token_id, -100, windows)
    return model(input_ids=inputs, attention_mask=windows != tokenizer.pad_token_id, labels=labels).loss


def heldout_loss(model: BartForConditionalGeneration, tokenizer: PreTrainedTokenizerBase, windows: torch.Tensor) -> float:
    """Mean denoising loss over `windows` (fixed masking, eval mode)."""
    generator = torch.Generator().manual_seed(SEED)
    model.eval()
    with torch.no_grad():
        losses = [denoising_loss(model, tokenizer, batch, generator).item() for batch in windows.split(64)]
    return sum(losses) / len(losses)


def build_seq2seq(folder: Path, steps: int = STEPS) -> None:
    """Train the tokenizer, pre-train the BART into `folder`; leaves the caller's torch RNG untouched."""
    print("building the embedded encoder-decoder once (a minute or two)...", file=sys.stderr)
    started = time.monotonic()
    tokenizer = train_tokenizer(bundled_texts()[0])  # the encoder's vocabulary
    train, heldout = bundled_texts(PRETRAINING_DATA)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = BartForConditionalGeneration(small_bart_config(tokenizer, dropout=0.0))
        windows, heldout_windows = chunk(tokenizer, train, WINDOW), chunk(tokenizer, heldout, WINDOW)
        print(f"  held-out denoising loss before: {heldout_loss(model, tokenizer, heldout_windows):.3f}", file=sys.stderr)
        pretrain(model, lambda batch, generator: denoising_loss(model, tokenizer, batch, generator), windows, steps,
                 eps=1e-8)
        print(f"  held-out denoising loss after: {heldout_loss(model, tokenizer, heldout_windows):.3f}", file=sys.stderr)
    model.config.dropout = FINE_TUNING_DROPOUT
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    print(f"  built in {time.monotonic() - started:.0f} s", file=sys.stderr)
