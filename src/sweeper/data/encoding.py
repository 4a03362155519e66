"""Tokenising commits as the study did: message, `[ADD]` added lines, `[DEL]` removed lines.

Each part gets a share of `max_length`: the message up to `message_tokens`, the rest split between
added and removed lines, a part that needs less leaving its share to the other. No padding here:
batches are padded to their own longest input (see `batching`).

For message generation (`encode_for_generation`) the input is the diff alone, `[ADD] added [DEL] removed`,
and the message, cut to `message_tokens`, is the target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from transformers import PreTrainedTokenizerBase

from sweeper.data.diff import ADD_MARKER, DEL_MARKER, parse_diff
from sweeper.data.messages import target_message
from sweeper.data.records import CommitRecord


@dataclass(frozen=True)
class EncodedCommit:
    """Token ids of one commit, unpadded, with its id and label (defect prediction) or target (generation)."""

    id: str
    input_ids: list[int]
    label: int = 0
    target_ids: list[int] = field(default_factory=list)  # the message's token ids, special tokens included
    reference: str = ""  # the message text that generated messages are scored against
    features: tuple[float, ...] = ()  # scaled expert features for an expert-feature head (`with_features`), else ()


def encode_commits(records: list[CommitRecord], tokenizer: PreTrainedTokenizerBase,
                   max_length: int, message_tokens: int) -> list[EncodedCommit]:
    """Encode every record; labels default to 0 where a record has none."""
    add_ids = marker_ids(tokenizer, ADD_MARKER)
    del_ids = marker_ids(tokenizer, DEL_MARKER)
    special = tokenizer.num_special_tokens_to_add(pair=False)
    budget = max_length - special - len(add_ids) - len(del_ids)
    encoded = []
    for record in records:
        changes = parse_diff(record.diff)
        message = leading_ids(tokenizer, record.message, message_tokens)[:message_tokens]
        room = max(budget - len(message), 0)
        added = leading_ids(tokenizer, " ".join(changes.added), room)
        removed = leading_ids(tokenizer, " ".join(changes.removed), room)
        added, removed = share_budget(added, removed, room)
        body = message + add_ids + added + del_ids + removed
        ids = tokenizer.build_inputs_with_special_tokens(body)
        encoded.append(EncodedCommit(record.id, ids, record.label or 0))
    return encoded


def encode_for_generation(records: list[CommitRecord], tokenizer: PreTrainedTokenizerBase, max_length: int,
                          message_tokens: int, part: str = "first_line", clean: bool = False,
                          keep_without_message: bool = False) -> list[EncodedCommit]:
    """Diff as input, message as target; commits whose message is empty after cleaning are left out, unless
    `keep_without_message` (to generate messages for new commits)."""
    add_ids = marker_ids(tokenizer, ADD_MARKER)
    del_ids = marker_ids(tokenizer, DEL_MARKER)
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False) - len(add_ids) - len(del_ids)
    encoded = []
    for record in records:
        reference = target_message(record.message, part, clean)
        if not reference and not keep_without_message:
            continue
        changes = parse_diff(record.diff)
        room = max(budget, 0)
        added, removed = share_budget(leading_ids(tokenizer, " ".join(changes.added), room),
                                      leading_ids(tokenizer, " ".join(changes.removed), room), room)
        input_ids = tokenizer.build_inputs_with_special_tokens(add_ids + added + del_ids + removed)
        target_ids = tokenizer.build_inputs_with_special_tokens(
            leading_ids(tokenizer, reference, message_tokens)[:message_tokens])
        encoded.append(EncodedCommit(record.id, input_ids, target_ids=target_ids, reference=reference))
    return encoded


def with_features(items: list[EncodedCommit], matrix: Sequence[Sequence[float]]) -> list[EncodedCommit]:
    """Copies of `items` carrying row i of `matrix` (scaled expert features, `data.features`) as features.

        >>> with_features([EncodedCommit("a", [0, 5, 2])], [[0.5, -1.0]])[0].features
        (0.5, -1.0)
    """
    if len(items) != len(matrix):
        raise ValueError(f"{len(items)} encoded commits but {len(matrix)} feature rows")
    return [replace(item, features=tuple(float(value) for value in row)) for item, row in zip(items, matrix)]


def share_budget(first: list[int], second: list[int], budget: int) -> tuple[list[int], list[int]]:
    """Cut two token lists to fit `budget` together: half each, unused room going to the other."""
    half = budget // 2
    if len(first) <= half:
        return first, second[:budget - len(first)]
    if len(second) <= budget - half:
        return first[:budget - len(second)], second
    return first[:half], second[:budget - half]


def token_ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of `text` without special tokens."""
    return tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"] if text else []


def leading_ids(tokenizer: PreTrainedTokenizerBase, text: str, needed: int) -> list[int]:
    """Token ids of `text` whose first `needed` are those of the whole text, without tokenising all of a huge one.

    A diff of a vendored library or a generated file can be many megabytes (8 MB took 8 s and 1 GB to tokenise)
    while only the first few hundred tokens are kept. So a long text is tokenised by prefixes that end before a
    space, growing fourfold until one gives more than `needed` tokens: the tokenizers split words at spaces, so a
    prefix's tokens are the first tokens of the whole text.
    """
    size = max(16 * needed, 4096)
    while len(text) > size:
        cut = text.rfind(" ", 0, size)
        ids = token_ids(tokenizer, text[:cut] if cut > 0 else text[:size])
        if len(ids) > needed:
            return ids
        size *= 4
    return token_ids(tokenizer, text)


def marker_ids(tokenizer: PreTrainedTokenizerBase, marker: str) -> list[int]:
    """The marker as one special token where the tokenizer has it, else as ordinary text."""
    if marker in tokenizer.get_vocab():
        return [tokenizer.convert_tokens_to_ids(marker)]
    return token_ids(tokenizer, marker)
