"""The embedded default backbone: a small RoBERTa pre-trained offline on the bundled commits.

Built once per machine (a minute or two on two CPU cores) into `$SWEEPER_CACHE/embedded-roberta-v1`
(default `~/.cache/sweeper`): a byte-level BPE tokenizer trained on the bundled commits, then a short,
seeded masked-LM pre-training. Every `HELDOUT_EVERY`-th commit is held out of both, so the
pre-training can be checked on commits it never saw.
"""

from __future__ import annotations

import gzip
import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

import torch
import torch.nn.functional as F
from filelock import FileLock
from tokenizers import AddedToken, ByteLevelBPETokenizer
from transformers import (
    PreTrainedTokenizerBase,
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaTokenizerFast,
    get_linear_schedule_with_warmup,
)

from sweeper.folders import cache_dir
from sweeper.data.diff import ADD_MARKER, DEL_MARKER, commit_text

NAME = "embedded-roberta-v1"
BUNDLED = ("jitdp-sample.jsonl.gz", "cmg-sample.jsonl.gz")
HELDOUT_EVERY = 20
VOCAB_SIZE = 8000
SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", ADD_MARKER, DEL_MARKER]
SEQ_LEN = 128
# Chosen by measurement: 800 steps of 8 windows take about 75 s on two CPU cores and bring the held-out
# MLM loss well below the unigram level (about 7.1); a larger learning rate stays stuck at that level.
BATCH_SIZE = 8
STEPS = 800
LEARNING_RATE = 1e-3
FINE_TUNING_DROPOUT = 0.1
MASK_PROB = 0.15
SEED = 0


def embedded_backbone_dir() -> Path:
    """The embedded encoder's folder, built on first use (safe when several processes ask at once)."""
    return built_once(NAME, build_backbone)


def built_once(name: str, build: Callable[[Path], None]) -> Path:
    """`cache_dir()/name`, made by `build(folder)` under a file lock the first time it is asked for."""
    target = cache_dir() / name
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{target}.lock"):
        if not target.is_dir():
            partial = Path(tempfile.mkdtemp(prefix=f"{name}.", suffix=".partial", dir=target.parent))
            try:
                build(partial)
                partial.rename(target)
                print(f"saved to {target}", file=sys.stderr)
            finally:
                shutil.rmtree(partial, ignore_errors=True)
    return target


def bundled_texts(names: tuple[str, ...] = BUNDLED) -> tuple[list[str], list[str]]:
    """The bundled commits as `commit_text` strings, split into (pre-training, held out)."""
    texts: list[str] = []
    for name in names:
        with gzip.open(str(files("sweeper") / "data" / "bundled" / name), "rt", encoding="utf-8") as handle:
            texts += [commit_text(row["message"], row["diff"]) for row in map(json.loads, handle)]
    heldout = [text for index, text in enumerate(texts) if index % HELDOUT_EVERY == 0]
    train = [text for index, text in enumerate(texts) if index % HELDOUT_EVERY != 0]
    return train, heldout


def train_tokenizer(texts: list[str]) -> RobertaTokenizerFast:
    """A byte-level BPE trained on `texts`, wrapped as a RoBERTa tokenizer with `[ADD]` and `[DEL]`."""
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS, show_progress=False)
    markers = [AddedToken(marker, lstrip=True, special=True) for marker in (ADD_MARKER, DEL_MARKER)]
    with tempfile.TemporaryDirectory() as scratch:
        vocab_file, merges_file = bpe.save_model(scratch)
        return RobertaTokenizerFast(vocab_file, merges_file, additional_special_tokens=markers, model_max_length=512)


def chunk(tokenizer: PreTrainedTokenizerBase, texts: list[str], length: int = SEQ_LEN) -> torch.Tensor:
    """Every text cut into consecutive windows of at most `length` tokens, padded: (windows, length)."""
    encoded = tokenizer(
        texts, max_length=length, truncation=True, return_overflowing_tokens=True, padding="max_length"
    )
    return torch.tensor(encoded["input_ids"])


def mask_tokens(
    ids: torch.Tensor, tokenizer: PreTrainedTokenizerBase, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: 15% of the ordinary tokens are predicted; of those 80% `<mask>`, 10% random, 10% kept."""
    chosen = torch.bernoulli(torch.full(ids.shape, MASK_PROB), generator=generator).bool()
    chosen &= ~torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    labels = torch.where(chosen, ids, -100)
    draw = torch.rand(ids.shape, generator=generator)
    random_ids = torch.randint(len(tokenizer), ids.shape, generator=generator)
    inputs = torch.where(chosen & (draw < 0.8), tokenizer.mask_token_id, ids)
    inputs = torch.where(chosen & (draw >= 0.8) & (draw < 0.9), random_ids, inputs)
    return inputs, labels


def masked_lm_loss(
    model: RobertaForMaskedLM, tokenizer: PreTrainedTokenizerBase, batch: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, int]:
    """Masked-LM loss of one batch and the number of predicted tokens.

    The same loss as `RobertaForMaskedLM(labels=...)`, but the LM head runs on the masked positions only,
    which halves the cost of a step with this small model and large vocabulary.
    """
    inputs, labels = mask_tokens(batch, tokenizer, generator)
    hidden = model.roberta(input_ids=inputs, attention_mask=batch != tokenizer.pad_token_id).last_hidden_state
    picked = labels != -100
    return F.cross_entropy(model.lm_head(hidden[picked]), labels[picked]), int(picked.sum())


def mlm_loss(model: RobertaForMaskedLM, tokenizer: PreTrainedTokenizerBase, windows: torch.Tensor) -> float:
    """Mean masked-LM loss per predicted token over `windows`, with a fixed masking, in eval mode."""
    generator = torch.Generator().manual_seed(SEED)
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in windows.split(64):
            loss, predicted = masked_lm_loss(model, tokenizer, batch, generator)
            total, count = total + loss.item() * predicted, count + predicted
    return total / count


def small_config(tokenizer: PreTrainedTokenizerBase, dropout: float = FINE_TUNING_DROPOUT) -> RobertaConfig:
    """The embedded model's shape: hidden 128, 4 layers, 4 heads."""
    return RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=512,
        max_position_embeddings=514,
        type_vocab_size=1,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


BatchLoss = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def pretrain(model: torch.nn.Module, batch_loss: BatchLoss, windows: torch.Tensor, steps: int,
             eps: float = 1e-6) -> None:
    """`steps` AdamW steps of `batch_loss` on batches of `windows` in a seeded order, linear warm-up then decay.

    One seeded generator draws the order and is handed to `batch_loss` for its masking.
    """
    generator = torch.Generator().manual_seed(SEED)
    order = torch.cat([torch.randperm(len(windows), generator=generator)
                       for _ in range(math.ceil(steps * BATCH_SIZE / len(windows)))])
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=LEARNING_RATE, betas=(0.9, 0.98), eps=eps, weight_decay=0.01
    )
    schedule = get_linear_schedule_with_warmup(optimizer, max(1, steps // 20), steps)
    model.train()
    recent = 0.0
    for step in range(steps):
        loss = batch_loss(windows[order[step * BATCH_SIZE:(step + 1) * BATCH_SIZE]], generator)
        recent += loss.item()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if (step + 1) % 100 == 0:
            print(f"  step {step + 1}/{steps}: training loss {recent / 100:.3f}", file=sys.stderr)
            recent = 0.0


def build_backbone(folder: Path, steps: int = STEPS) -> None:
    """Train the tokenizer and pre-train the model into `folder`; leaves the caller's torch RNG untouched."""
    print("building the embedded backbone once (a minute or two)...", file=sys.stderr)
    started = time.monotonic()
    train, heldout = bundled_texts()
    tokenizer = train_tokenizer(train)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        # No dropout in this short pre-training: it slows learning. Fine-tuning gets the usual 0.1.
        model = RobertaForMaskedLM(small_config(tokenizer, dropout=0.0))
        heldout_windows = chunk(tokenizer, heldout)
        print(f"  held-out MLM loss before: {mlm_loss(model, tokenizer, heldout_windows):.3f}", file=sys.stderr)
        pretrain(model, lambda batch, generator: masked_lm_loss(model, tokenizer, batch, generator)[0],
                 chunk(tokenizer, train), steps)
        print(f"  held-out MLM loss after: {mlm_loss(model, tokenizer, heldout_windows):.3f}", file=sys.stderr)
    model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = FINE_TUNING_DROPOUT
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    print(f"  built in {time.monotonic() - started:.0f} s", file=sys.stderr)
