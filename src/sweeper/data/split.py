"""Train / validation / test splits: seeded random (stratified on label), by time, or by project; and a share of
the training split for low-resource runs.

A time split trains on the oldest commits and evaluates on the newest, as a defect predictor
would be used; a random split mixes past and future and flatters every method. A project split trains on some
projects and evaluates on others: does a model carry over to a project it has never seen?

    >>> from sweeper.data.records import read_records
    >>> records = read_records("bundled:jitdp").records
    >>> splits = split_records(records, SplitConfig(kind="project", valid=["commons-io"], test=0.1), seed=0)
    >>> {record.project for record in splits.valid}, len({record.project for record in splits.test})
    ({'commons-io'}, 2)
    >>> io = SplitConfig(kind="project", valid=["commons-io"])
    >>> len(split_records(records, io, 0, train_fraction=0.1).train), len(split_records(records, io, 0).train)
    (192, 1914)
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from sweeper.config import SplitConfig, TrialConfig
from sweeper.data.records import CommitRecord, Dataset, read_records, sample_records
from sweeper.errors import DataError, SweeperError


@dataclass(frozen=True)
class Splits:
    """Records for training, validation (model selection, thresholds) and an optional final test."""

    train: list[CommitRecord]
    valid: list[CommitRecord]
    test: list[CommitRecord]


def trial_splits(config: TrialConfig, dataset: Dataset | None = None) -> tuple[Dataset, Splits]:
    """Read `config`'s data (unless given), sample and split it: the one way to a trial's split, which its baselines
    and its MLflow dataset inputs take too. `data.seed` (default: the trial's seed) seeds the sample, the split and
    the training fraction, so a repeat with another `seed` and the same `data.seed` trains on the same commits.
    With `data.split.folds` the validation split must cut into its rolling windows (`rolling_windows`)."""
    dataset = dataset or read_records(config.data.path, config.task, config.data.skip_bad)
    seed = config.seed if config.data.seed is None else config.data.seed
    records = sample_records(dataset.records, config.data.sample, seed)
    splits = split_records(records, config.data.split, seed, config.data.train_fraction)
    if config.data.split.folds > 1:
        rolling_windows(splits, config.data.split.folds)  # windows it cannot cut fail here, before any training
    return dataset, splits


@dataclass(frozen=True)
class Window:
    """One validation window of a rolling-origin evaluation, as positions in `splits.train + splits.valid` (time
    order): `train`, every commit strictly older than the window's first; `valid`, the window's own commits."""

    train: list[int]
    valid: range


def rolling_windows(splits: Splits, folds: int) -> list[Window]:
    """Cut a time split's validation commits into `folds` successive windows of equal size (differing by one at
    most where it does not divide); each window trains on every commit, training split and earlier windows,
    dated strictly before its first commit (a commit dated like it, ordered before it by id, is left out: it is
    neither older nor newer). The windows cover the validation split exactly, each commit once; the test split
    stays held out after the last window.

        >>> from sweeper.data.records import read_records
        >>> splits = time_split(read_records("bundled:jitdp").records[:100], 0.4, 0.1)
        >>> [(len(window.train), len(window.valid)) for window in rolling_windows(splits, 4)]
        [(50, 10), (60, 10), (70, 10), (80, 10)]
    """
    history = splits.train + splits.valid
    start, count = len(splits.train), len(splits.valid)
    if count < folds:
        raise SweeperError(f"split: {count} validation commits cannot make {folds} rolling windows: lower "
                           "data.split.folds or raise data.split.valid")
    edges = [start + count * index // folds for index in range(folds + 1)]
    windows = []
    for first, end in zip(edges, edges[1:]):
        begins = history[first].date
        train = [index for index in range(first) if history[index].date < begins]
        if not train:
            raise SweeperError(f"split: no commit is older than rolling window {len(windows) + 1} (from "
                               f"{begins.isoformat()}): lower data.split.valid or data.split.folds")
        windows.append(Window(train, range(first, end)))
    return windows


def split_records(records: list[CommitRecord], config: SplitConfig, seed: int, train_fraction: float = 1.0) -> Splits:
    """Split by `config.kind`, then keep `train_fraction` of the training split (`train_share`)."""
    if config.kind == "project":
        splits = project_split(records, config, seed)
    else:
        valid, test = float(config.valid), float(config.test)  # type: ignore[arg-type]  # lists need kind: project
        if valid + test >= 0.9:
            raise SweeperError(f"split: valid ({valid}) + test ({test}) leaves under 10% for training")
        splits = (time_split if config.kind == "time" else random_split)(records, valid, test, seed)
    if not splits.train or not splits.valid:
        raise SweeperError(f"split: {len(records)} records are too few for a train and a validation set")
    return Splits(train_share(splits.train, train_fraction, seed), splits.valid, splits.test)


def train_share(records: list[CommitRecord], fraction: float, seed: int) -> list[CommitRecord]:
    """A seeded share of `records` (at least one per label), stratified on the label, in their order.

    Nested: with one seed, the records kept at a smaller fraction are among those kept at a larger one, so a
    low-resource sweep adds data as the fraction grows instead of drawing a new sample.
    """
    if fraction >= 1.0:
        return list(records)
    rng = random.Random(seed)
    keep: set[int] = set()
    for label, indices in sorted(strata(records).items(), key=lambda item: -1 if item[0] is None else item[0]):
        rng.shuffle(indices)
        keep.update(indices[:max(1, round(len(indices) * fraction))])
    return [record for index, record in enumerate(records) if index in keep]


def strata(records: list[CommitRecord]) -> dict[int | None, list[int]]:
    """The indices of the records with each label (None: unlabelled, as for message generation)."""
    groups: dict[int | None, list[int]] = {}
    for index, record in enumerate(records):
        groups.setdefault(record.label, []).append(index)
    return groups


def project_split(records: list[CommitRecord], config: SplitConfig, seed: int) -> Splits:
    """Whole projects on each side: the named ones, then shares of the projects drawn (seeded) from those not named;
    training gets `config.train` or every project left. Records keep their order."""
    source = records[0].source if records else "data"
    projects = sorted({record.project for record in records})
    if projects == [""]:
        raise DataError(source, None, "project", "missing in every record: data.split.kind project needs it")
    sides: dict[str, list[str]] = {}
    for side in ("train", "valid", "test"):
        named = getattr(config, side)
        if isinstance(named, list):
            unknown = [project for project in named if project not in projects]
            if unknown:
                raise DataError(source, None, f"data.split.{side}", f"unknown project '{unknown[0]}'; the file's "
                                f"projects: {', '.join(projects)}")
            sides[side] = list(named)
    free = [project for project in projects if not any(project in named for named in sides.values())]
    random.Random(seed).shuffle(free)
    for side in ("test", "valid"):
        share = getattr(config, side)
        if not isinstance(share, list):
            count = max(1, round(len(projects) * share)) if share > 0 else 0
            available = len(free) - (0 if "train" in sides else 1)  # one left to train on, unless training is named
            if count > available:
                raise SweeperError(f"split: data.split.{side} {share} of {len(projects)} projects needs {count}, "
                                   f"{max(available, 0)} can be drawn: give a smaller share or name the projects")
            sides[side], free = free[:count], free[count:]
    sides.setdefault("train", free)
    parts = {side: [record for record in records if record.project in set(names)] for side, names in sides.items()}
    return Splits(parts["train"], parts["valid"], parts["test"])


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
    for label, indices in sorted(strata(records).items(), key=lambda item: -1 if item[0] is None else item[0]):
        group = [records[index] for index in indices]
        rng.shuffle(group)
        n_test = round(len(group) * test)
        n_valid = round(len(group) * valid)
        parts["test"] += group[:n_test]
        parts["valid"] += group[n_test:n_test + n_valid]
        parts["train"] += group[n_test + n_valid:]
    return Splits(parts["train"], parts["valid"], parts["test"])
