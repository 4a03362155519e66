"""Reading diff data: JSON Lines (plain or gzip) from a file, S3 or the bundled samples, validated per line.

    >>> dataset = read_records("bundled:jitdp", task="jitdp")
    >>> len(dataset.records), dataset.records[0].label in (0, 1)
    (2000, True)
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import sys
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from sweeper.errors import DataError
from sweeper.timings import timed

BUNDLED = {"jitdp": "jitdp-sample.jsonl.gz", "cmg": "cmg-sample.jsonl.gz"}
REQUIRED_TEXT = ("id", "message", "diff")


@dataclass(frozen=True)
class CommitRecord:
    """One commit: its diff, message, time and (for defect prediction) label."""

    id: str
    date: datetime
    message: str
    diff: str
    project: str = ""
    label: int | None = None
    features: dict[str, float] = field(default_factory=dict)
    # Where the record was read from, for errors found later (e.g. missing features); not part of equality.
    source: str = field(default="", compare=False, repr=False)
    line: int = field(default=0, compare=False, repr=False)


@dataclass
class Dataset:
    """Records read from one source, with what was skipped and a digest of the raw bytes."""

    source: str
    records: list[CommitRecord]
    skipped: list[DataError]
    digest: str


@timed("data.read")
def read_records(source: str, task: str = "jitdp", skip_bad: bool = False) -> Dataset:
    """Read and validate every line; a bad line raises DataError unless `skip_bad` (then it is counted)."""
    raw = read_bytes(source)
    if source.endswith(".gz") or raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise DataError(source, None, None, f"not a readable gzip file ({error})") from None
    records: list[CommitRecord] = []
    skipped: list[DataError] = []
    for number, line in enumerate(io.BytesIO(raw), start=1):
        if not line.strip():
            continue
        try:
            records.append(parse_line(line, source, number, task))
        except DataError as error:
            if not skip_bad:
                raise
            skipped.append(error)
    if skipped:
        print(f"{source}: skipped {len(skipped)} bad line(s); first: {skipped[0]}", file=sys.stderr)
    if not records:
        raise DataError(source, None, None, "no valid records")
    return Dataset(source, records, skipped, hashlib.sha256(raw).hexdigest()[:16])


def read_bytes(source: str) -> bytes:
    """The raw bytes behind a path, an s3:// URI or a bundled:NAME sample."""
    if source.startswith("bundled:"):
        name = source.removeprefix("bundled:")
        if name not in BUNDLED:
            raise DataError(source, None, None, f"unknown bundled sample; choose one of {sorted(BUNDLED)}")
        return (resources.files("sweeper") / "data" / "bundled" / BUNDLED[name]).read_bytes()
    if source.startswith("s3://"):
        return read_s3(source)
    path = Path(source).expanduser()
    if not path.is_file():
        raise DataError(source, None, None, "file not found (give a path, an s3:// URI or bundled:jitdp)")
    return path.read_bytes()


def read_s3(uri: str) -> bytes:
    """Fetch s3://bucket/key with boto3; endpoint and credentials come from the environment only."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    try:
        return boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    except (BotoCoreError, ClientError) as error:
        raise DataError(uri, None, None, f"cannot read from S3: {error}") from None


def parse_line(line: bytes, source: str, number: int, task: str) -> CommitRecord:
    """Validate one JSON line into a CommitRecord; every problem names its field."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(source, number, None, f"not UTF-8 (byte {error.start}); re-encode the file as UTF-8") from None
    try:
        row = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(source, number, None, f"not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(row, dict):
        raise DataError(source, number, None, "expected a JSON object per line")
    for name in REQUIRED_TEXT:
        if not isinstance(row.get(name), str):
            raise DataError(source, number, name, "missing or not a string")
    if not row["diff"].strip():
        raise DataError(source, number, "diff", "empty diff")
    return CommitRecord(
        id=row["id"],
        date=parse_date(row.get("date"), source, number),
        message=row["message"],
        diff=row["diff"],
        project=str(row.get("project", "")),
        label=parse_label(row.get("label"), source, number) if task == "jitdp" else None,
        features=parse_features(row.get("features"), source, number),
        source=source,
        line=number,
    )


def parse_date(value: Any, source: str, number: int) -> datetime:
    """ISO-8601 date with offset, as `git show --format=%aI` writes it."""
    if not isinstance(value, str):
        raise DataError(source, number, "date", "missing; expected ISO-8601 like 2018-01-16T10:00:00+00:00")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise DataError(source, number, "date", f"not ISO-8601: {value!r}") from None


def parse_label(value: Any, source: str, number: int) -> int:
    """Defect label: 0 (clean) or 1 (defect-inducing)."""
    if isinstance(value, bool) or value not in (0, 1):
        raise DataError(source, number, "label", f"must be 0 or 1, got {value!r}")
    return int(value)


def parse_features(value: Any, source: str, number: int) -> dict[str, float]:
    """Optional expert change metrics: a map of name to number."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, (int, float)) for v in value.values()):
        raise DataError(source, number, "features", "must be an object of numbers")
    return {str(k): float(v) for k, v in value.items()}


def sample_records(records: list[CommitRecord], size: int | None, seed: int) -> list[CommitRecord]:
    """A seeded sample of `size` records, in their original order (all records when size is None)."""
    import random

    if size is None or size >= len(records):
        return list(records)
    keep = sorted(random.Random(seed).sample(range(len(records)), size))
    return [records[index] for index in keep]
