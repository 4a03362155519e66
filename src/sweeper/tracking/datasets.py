"""A trial's data as MLflow dataset inputs: one per split, so the UI's Dataset column and dataset views show what
each run trained and was validated on.

The split is deterministic from the trial's config (sample, split, training fraction, data seed), so the driver computes it
from the records it has already read: the digest names the split's commits (their ids, with the digest of the file
they came from), the profile counts them.

    >>> from sweeper.config import TrialConfig
    >>> from sweeper.data.records import read_records
    >>> config = TrialConfig().with_overrides({"data.sample": 200, "data.split.valid": 0.25})
    >>> inputs = split_inputs(config, read_records("bundled:jitdp"))
    >>> [(i.dataset.name, i.tags[0].value, json.loads(i.dataset.profile)["commits"]) for i in inputs]
    [('bundled:jitdp', 'train', 150), ('bundled:jitdp', 'validation', 50)]
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mlflow.entities import Dataset as MlflowDataset
from mlflow.entities import DatasetInput, InputTag

from sweeper.config import TrialConfig
from sweeper.data.records import CommitRecord, Dataset
from sweeper.data.split import trial_splits
from sweeper.tracking.schema import DatasetRole, Tag


def split_digest(file_digest: str, records: list[CommitRecord]) -> str:
    """Which commits a split holds: a hash of the file's digest and the split's ids, in sorted order."""
    text = "\n".join([file_digest, *sorted(record.id for record in records)])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def source_of(path: str) -> tuple[str, str]:
    """MLflow's source type and source (JSON) for a data path: an S3 object, a local file or a bundled sample."""
    if path.startswith("s3://"):
        return "s3", json.dumps({"uri": path})
    if path.startswith("bundled:"):
        return "sweeper", json.dumps({"uri": path})
    return "local", json.dumps({"uri": str(Path(path).expanduser().resolve())})


def split_inputs(config: TrialConfig, dataset: Dataset) -> list[DatasetInput]:
    """The trial's train, validation and (if any) test split, each a dataset input tagged with its role."""
    read = dataset if dataset.source == config.data.path else None  # a searched data path: not the driver's file
    dataset, splits = trial_splits(config, read)  # the split the trial itself takes
    source_type, source = source_of(config.data.path)
    inputs = []
    for role, part in ((DatasetRole.TRAIN, splits.train), (DatasetRole.VALIDATION, splits.valid),
                       (DatasetRole.TEST, splits.test)):
        if not part:
            continue
        profile = {"commits": len(part), "split": config.data.split.kind}
        if config.task == "jitdp":
            profile["defective"] = sum(record.label or 0 for record in part)
        inputs.append(DatasetInput(
            MlflowDataset(config.data.path, split_digest(dataset.digest, part), source_type, source,
                          profile=json.dumps(profile)),
            tags=[InputTag(Tag.DATASET_CONTEXT, role)]))
    return inputs
