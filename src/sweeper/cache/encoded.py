"""Encode once per sweep and node: a trial's encoded splits, kept under `$SWEEPER_CACHE/encoded/KEY`.

The key is a digest of everything the encoded commits depend on: the data (the digest of its raw bytes, and the ids
of each split's records after sampling and splitting), the task, its `data.*` settings, `features` (expert features
are scaled by the training split's scaler), the seed (sampling and splitting draw from it), the tokenizer (its name
and a hash of its vocabulary, merges, special tokens and settings) and the code that reads, splits and encodes
(`sweeper/data`, `sweeper/tasks`).
The first trial of a node with a key encodes and saves; the others read the ids back (NumPy arrays, no pickle),
and a reused worker keeps the last splits it had in memory. Usage::

    (train, valid, test), key = encoded_splits(task, splits, tokenizer, config, dataset.digest)
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sweeper.cache import cached_folder, digest
from sweeper.data.encoding import EncodedCommit

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from sweeper.config import TrialConfig
    from sweeper.data.records import CommitRecord
    from sweeper.data.split import Splits
    from sweeper.tasks import Task

FORMAT = 1  # of the files below; part of the key
SPLITS = ("train", "valid", "test")
ARRAYS = "arrays.npz"  # per split: input ids, target ids and features, each flat with offsets; labels
TEXT = "text.json"  # per split: ids and reference messages
Encoded = tuple[list[EncodedCommit], list[EncodedCommit], list[EncodedCommit]]
_recent: OrderedDict[str, Encoded] = OrderedDict()  # this process's last splits, by key


def encoded_splits(task: Task, splits: Splits, tokenizer: PreTrainedTokenizerBase, config: TrialConfig,
                   data_digest: str) -> tuple[Encoded, str]:
    """The train, valid and test splits encoded by `task` (from the cache when a trial of this node encoded the
    same), and the cache key."""
    parts = (splits.train, splits.valid, splits.test)
    key = encoding_key(config, data_digest, parts, tokenizer)
    if key not in _recent:
        folder, _ = cached_folder("encoded", key, lambda into: save(into, tuple(task.encode(part, tokenizer)
                                                                                for part in parts)),
                                  about={"backbone": config.backbone, "data": config.data.path})
        _recent[key] = load(folder)
        while len(_recent) > 2:
            _recent.popitem(last=False)
    _recent.move_to_end(key)
    train, valid, test = _recent[key]
    return (list(train), list(valid), list(test)), key


def encoding_key(config: TrialConfig, data_digest: str, parts: tuple[list[CommitRecord], ...],
                 tokenizer: PreTrainedTokenizerBase) -> str:
    """The digest that names a trial's encoded splits: equal keys, equal token ids. `data.split.folds` is left
    out: a rolling trial encodes the same train, valid and test splits as the single split it cuts into windows
    (the windows are positions in them), so both, and every window, share one encoding and one frozen-prefix cache."""
    settings = config.data.model_dump(mode="json")
    del settings["split"]["folds"]
    return digest({"format": FORMAT, "task": config.task, "features": config.features, "data": data_digest,
                   "seed": config.seed,
                   "records": [records_digest(records) for records in parts],
                   "settings": settings, "tokenizer": tokenizer_fingerprint(tokenizer),
                   "code": code_fingerprint()})


def records_digest(records: list[CommitRecord]) -> str:
    """A digest of the records' ids, in order (their content is fixed by the data's digest, settings and seed)."""
    return hashlib.sha256("\n".join(record.id for record in records).encode()).hexdigest()


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> dict[str, str]:
    """The tokenizer's name and class, and a hash of its vocabulary and settings (a fast tokenizer's whole JSON:
    vocabulary, merges, normaliser, special and added tokens, post-processor)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    settings = json.dumps([tokenizer.special_tokens_map, tokenizer.init_kwargs], sort_keys=True, default=str)
    return {"name": str(tokenizer.name_or_path), "class": type(tokenizer).__name__,
            "vocabulary": hashlib.sha256(text.encode()).hexdigest(),
            "settings": hashlib.sha256(settings.encode()).hexdigest()}


@functools.cache
def code_fingerprint() -> str:
    """A hash of the code that reads, splits and encodes commits (`sweeper/data/*.py`, `sweeper/tasks/*.py`)."""
    root = Path(__file__).resolve().parent.parent
    hashed = hashlib.sha256()
    for path in sorted([*root.glob("data/*.py"), *root.glob("tasks/*.py")]):
        hashed.update(path.name.encode() + path.read_bytes())
    return hashed.hexdigest()


def save(folder: Path, encoded: tuple[list[EncodedCommit], ...]) -> None:
    """Write the encoded splits: token ids as flat arrays with offsets, text as JSON."""
    arrays: dict[str, np.ndarray] = {}
    text: dict[str, Any] = {}
    for name, items in zip(SPLITS, encoded):
        for field in ("input_ids", "target_ids", "features"):
            values = [getattr(item, field) for item in items]
            arrays[f"{name}.{field}"] = np.array([value for row in values for value in row],
                                                 dtype=np.float64 if field == "features" else np.int64)
            arrays[f"{name}.{field}.offsets"] = np.cumsum([0] + [len(row) for row in values], dtype=np.int64)
        arrays[f"{name}.label"] = np.array([item.label for item in items], dtype=np.int64)
        text[name] = {"id": [item.id for item in items], "reference": [item.reference for item in items]}
    np.savez(folder / ARRAYS, **arrays)
    (folder / TEXT).write_text(json.dumps(text))


def load(folder: Path) -> Encoded:
    """The encoded splits `save` wrote, equal to what was saved."""
    text = json.loads((folder / TEXT).read_text())
    with np.load(folder / ARRAYS, allow_pickle=False) as arrays:
        def rows(name: str, field: str) -> list[list[Any]]:
            values, offsets = arrays[f"{name}.{field}"].tolist(), arrays[f"{name}.{field}.offsets"].tolist()
            return [values[start:end] for start, end in zip(offsets, offsets[1:])]

        splits = []
        for name in SPLITS:
            labels = arrays[f"{name}.label"].tolist()
            splits.append([EncodedCommit(id_, ids, label, targets, reference, tuple(features))
                           for id_, ids, label, targets, reference, features in zip(
                               text[name]["id"], rows(name, "input_ids"), labels, rows(name, "target_ids"),
                               text[name]["reference"], rows(name, "features"))])
    return splits[0], splits[1], splits[2]
