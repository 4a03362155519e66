"""Train / validation / test splits: seeded random (stratified on label) or by time.

A time split trains on the oldest commits and evaluates on the newest, as a defect predictor
would be used; a random split mixes past and future and flatters every method.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from sweeper.config import SplitConfig, TrialConfig
from sweeper.data.records import CommitRecord, Dataset, read_records, sample_records
from sweeper.errors import SweeperError


@dataclass(frozen=True)
class Splits:
    """Records for training, validation (model selection, thresholds) and an optional final test."""

    train: list[CommitRecord]
    valid: list[CommitRecord]
    test: list[CommitRecord]


def trial_splits(config: TrialConfig, dataset: Dataset | None = None) -> tuple[Dataset, Splits]:
    """Read `config`'s data (unless given), sample and split it: the one way to a trial's split, which its
    baselines take too, so they are fitted and scored on exactly the trial's commits."""
    dataset = dataset or read_records(config.data.path, config.task, config.data.skip_bad)
    records = sample_records(dataset.records, config.data.sample, config.seed)
    return dataset, split_records(records, config.data.split, config.seed)


def split_records(records: list[CommitRecord], config: SplitConfig, seed: int) -> Splits:
    """Split by `config.kind`; sizes are shares of the records."""
    if config.valid + config.test >= 0.9:
        raise SweeperError(f"split: valid ({config.valid}) + test ({config.test}) leaves under 10% for training")
    splitter = time_split if config.kind == "time" else random_split
    splits = splitter(records, config.valid, config.test, seed)
    if not splits.train or not splits.valid:
        raise SweeperError(f"split: {len(records)} records are too few for a train and a validation set")
    return splits


def time_split(records: list[CommitRecord], valid: float, test: float, seed: int = 0) -> Splits:
    """Oldest commits train, the next ones validate, the newest test (ties broken by id)."""
    ordered = sorted(records, key=lambda record: (record.date, record.id))
    n_test = round(len(ordered) * test)
    n_valid = round(len(ordered) * valid)
    n_train = len(ordered) - n_valid - n_test
    return Splits(ordered[:n_train], ordered[n_train:n_train + n_valid], ordered[n_train + n_valid:])


def random_split(records: list[CommitRecord], valid: float, test: float, seed: int) -> Splits:
    """Seeded shuffle within each label, so every split keeps the label balance."""
    rng = random.Random(seed)
    parts: dict[str, list[CommitRecord]] = {"train": [], "valid": [], "test": []}
    strata: dict[int | None, list[CommitRecord]] = {}
    for record in records:
        strata.setdefault(record.label, []).append(record)
    for label in sorted(strata, key=lambda value: -1 if value is None else value):
        group = strata[label]
        rng.shuffle(group)
        n_test = round(len(group) * test)
        n_valid = round(len(group) * valid)
        parts["test"] += group[:n_test]
        parts["valid"] += group[n_test:n_test + n_valid]
        parts["train"] += group[n_test + n_valid:]
    return Splits(parts["train"], parts["valid"], parts["test"])
