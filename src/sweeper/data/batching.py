"""Batches padded to their own longest input, drawn from buckets of similar length.

The study padded every input to 512 tokens; most diffs are far shorter, so most of that compute
went to padding. Sorting inputs by length inside large chunks, batching, then shuffling the
batches keeps the randomness of training while padding almost nothing.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

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


def collate(items: list[EncodedCommit], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad to the longest input in the batch: input_ids, attention_mask, labels."""
    width = max(len(item.input_ids) for item in items)
    input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, item in enumerate(items):
        input_ids[row, :len(item.input_ids)] = torch.tensor(item.input_ids)
        attention_mask[row, :len(item.input_ids)] = 1
    labels = torch.tensor([item.label for item in items], dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def iterate_batches(items: list[EncodedCommit], batch_size: int, pad_id: int,
                    seed: int | None) -> Iterator[dict[str, torch.Tensor]]:
    """Padded batches in bucketed order."""
    for batch in length_bucketed_batches(items, batch_size, seed):
        yield collate([items[index] for index in batch], pad_id)
