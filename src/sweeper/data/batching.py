"""Batches padded to their own longest input, drawn from buckets of similar length.

The study padded every input to 512 tokens; most diffs are far shorter, so most of that compute
went to padding. Sorting inputs by length inside large chunks, batching, then shuffling the
batches keeps the randomness of training while padding almost nothing.

`pad_to` gives the study's recipe back for comparison (`bench/throughput.py`): batches drawn in plain
shuffled order, every one padded to the same width.
"""

from __future__ import annotations

import random

import torch

from sweeper.data.encoding import EncodedCommit

BUCKET_BATCHES = 50  # how many batches' worth of inputs are sorted together


def length_bucketed_batches(items: list[EncodedCommit], batch_size: int, seed: int | None) -> list[list[int]]:
    """Indices grouped into batches of similar length; `seed=None` keeps a fixed order (evaluation)."""
    order = list(range(len(items)))
    rng = random.Random(seed)
    if seed is not None:
        rng.shuffle(order)
    chunk = batch_size * BUCKET_BATCHES
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        bucket = sorted(order[start:start + chunk], key=lambda index: len(items[index].input_ids))
        batches += [bucket[i:i + batch_size] for i in range(0, len(bucket), batch_size)]
    if seed is not None:
        rng.shuffle(batches)
    return batches


def plain_batches(count: int, batch_size: int, seed: int | None) -> list[list[int]]:
    """Indices in shuffled order (input order for `seed=None`), cut into batches: no bucketing."""
    order = list(range(count))
    if seed is not None:
        random.Random(seed).shuffle(order)
    return [order[i:i + batch_size] for i in range(0, count, batch_size)]


def batch_indices(items: list[EncodedCommit], batch_size: int, seed: int | None,
                  pad_to: int | None = None) -> list[list[int]]:
    """Length-bucketed batches, or plain ones when every batch is padded to `pad_to` anyway."""
    if pad_to is not None:
        return plain_batches(len(items), batch_size, seed)
    return length_bucketed_batches(items, batch_size, seed)


IGNORED_LABEL = -100  # PyTorch's cross-entropy skips targets with this id


def collate(items: list[EncodedCommit], pad_id: int, pad_to: int | None = None) -> dict[str, torch.Tensor]:
    """Pad to the longest input in the batch (or to `pad_to` tokens): input_ids, attention_mask, labels.

    For generation, `labels` are the targets' token ids padded with -100 (ignored by the loss).
    Items that carry expert features (`EncodedCommit.features`) add `features`, a float tensor (batch, 14).
    """
    longest = max(len(item.input_ids) for item in items)
    if pad_to is not None and longest > pad_to:
        raise ValueError(f"an input has {longest} tokens, more than pad_to ({pad_to})")
    width = pad_to or longest
    input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, item in enumerate(items):
        input_ids[row, :len(item.input_ids)] = torch.tensor(item.input_ids)
        attention_mask[row, :len(item.input_ids)] = 1
    if items[0].target_ids:
        labels = torch.full((len(items), max(len(item.target_ids) for item in items)), IGNORED_LABEL, dtype=torch.long)
        for row, item in enumerate(items):
            labels[row, :len(item.target_ids)] = torch.tensor(item.target_ids)
    else:
        labels = torch.tensor([item.label for item in items], dtype=torch.long)
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    if any(item.features for item in items):
        batch["features"] = collate_features(items)
    return batch


def collate_features(items: list[EncodedCommit]) -> torch.Tensor:
    """The items' expert features as a float tensor (batch, features); every item must carry as many."""
    widths = {len(item.features) for item in items}
    if len(widths) > 1:
        raise ValueError(f"items carry different numbers of features ({sorted(widths)}); give every item the same")
    return torch.tensor([item.features for item in items], dtype=torch.float32)
