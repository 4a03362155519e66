"""Reading, validating, splitting, encoding and batching diff data."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from sweeper.config import DataConfig, SplitConfig
from sweeper.data.batching import batch_indices, collate, length_bucketed_batches
from sweeper.data.diff import parse_diff
from sweeper.data.encoding import EncodedCommit, share_budget
from sweeper.data.records import read_records, sample_records
from sweeper.data.split import random_split, split_records, time_split
from sweeper.errors import DataError

DIFF = """diff --git a/A.java b/A.java
index 1..2 100644
--- a/A.java
+++ b/A.java
@@ -1,3 +1,3 @@
 context line
-    int x = 1;
+    int x = 2;
+    // added
diff --git a/B.java b/B.java
--- a/B.java
+++ b/B.java
@@ -5,2 +5,1 @@
-removed();
"""

GOOD = {"id": "p@1", "project": "p", "commit": "1", "date": "2010-01-01T00:00:00+00:00",
        "message": "fix", "diff": DIFF, "label": 1, "features": {"la": 2}}


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_parse_diff_keeps_only_changed_lines() -> None:
    changes = parse_diff(DIFF)
    assert changes.added == ["int x = 2;", "// added"]
    assert changes.removed == ["int x = 1;", "removed();"]


def test_bundled_sample_reads_with_labels() -> None:
    dataset = read_records("bundled:jitdp")
    assert len(dataset.records) == 2000
    assert {record.label for record in dataset.records} == {0, 1}
    assert 100 < sum(record.label for record in dataset.records) < 300
    assert len(dataset.digest) == 16


def test_plain_and_gzip_read_the_same(tmp_path: Path) -> None:
    line = json.dumps(GOOD).encode()
    plain = write_lines(tmp_path / "d.jsonl", [line, line.replace(b'"p@1"', b'"p@2"')])
    packed = tmp_path / "d.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert read_records(str(plain)).records == read_records(str(packed)).records


@pytest.mark.parametrize(("line", "field", "words"), [
    (b'{"id": "x", broken', None, "not valid JSON"),
    (json.dumps({**GOOD, "label": 2}).encode(), "label", "must be 0 or 1"),
    (json.dumps({**GOOD, "diff": "  "}).encode(), "diff", "empty diff"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "message"}).encode(), "message", "missing"),
    (json.dumps({**GOOD, "date": "yesterday"}).encode(), "date", "ISO-8601"),
    (b'{"id": "\xff\xfe"}', None, "not UTF-8"),
    (b"[1, 2]", None, "JSON object"),
])
def test_bad_line_names_file_line_and_field(tmp_path: Path, line: bytes, field: str | None, words: str) -> None:
    path = write_lines(tmp_path / "bad.jsonl", [json.dumps(GOOD).encode(), line])
    with pytest.raises(DataError) as caught:
        read_records(str(path))
    error = caught.value
    assert (error.source, error.line, error.field) == (str(path), 2, field)
    assert words in str(error) and f"{path}:2" in str(error)


def test_skip_bad_counts_what_it_skips(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "mixed.jsonl", [json.dumps(GOOD).encode(), b"nope", json.dumps(GOOD).encode()])
    dataset = read_records(str(path), skip_bad=True)
    assert len(dataset.records) == 2
    assert [error.line for error in dataset.skipped] == [2]


def test_missing_file_is_a_data_error() -> None:
    with pytest.raises(DataError, match="file not found"):
        read_records("/nonexistent/data.jsonl")


def test_time_split_trains_on_the_past() -> None:
    records = sample_records(read_records("bundled:jitdp").records, 500, seed=1)
    splits = time_split(records, valid=0.2, test=0.1)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (350, 100, 50)
    assert max(r.date for r in splits.train) <= min(r.date for r in splits.valid)
    assert max(r.date for r in splits.valid) <= min(r.date for r in splits.test)


def test_random_split_is_stratified_and_seeded() -> None:
    records = read_records("bundled:jitdp").records
    splits = random_split(records, valid=0.25, test=0.0, seed=3)
    share = lambda part: sum(r.label for r in part) / len(part)  # noqa: E731
    assert abs(share(splits.train) - share(splits.valid)) < 0.01
    again = random_split(records, valid=0.25, test=0.0, seed=3)
    assert [r.id for r in again.valid] == [r.id for r in splits.valid]
    assert {r.id for r in splits.train}.isdisjoint(r.id for r in splits.valid)


def test_split_refuses_too_few_records() -> None:
    records = read_records("bundled:jitdp").records[:2]
    with pytest.raises(Exception, match="too few"):
        split_records(records, SplitConfig(valid=0.1), seed=0)


def test_share_budget_gives_unused_room_to_the_other_part() -> None:
    assert share_budget([1] * 3, [2] * 100, 10) == ([1] * 3, [2] * 7)
    assert share_budget([1] * 100, [2] * 2, 10) == ([1] * 8, [2] * 2)
    assert share_budget([1] * 100, [2] * 100, 10) == ([1] * 5, [2] * 5)


def test_batches_pad_to_their_own_longest_input() -> None:
    items = [EncodedCommit(str(i), list(range(1, 2 + (i * 7) % 50)), i % 2) for i in range(200)]
    batches = length_bucketed_batches(items, 8, seed=0)
    assert sorted(i for batch in batches for i in batch) == list(range(200))
    padded = sum(len(batch) * max(len(items[i].input_ids) for i in batch) for batch in batches)
    real = sum(len(item.input_ids) for item in items)
    assert padded < 1.1 * real  # bucketing leaves little padding
    batch = collate([items[i] for i in batches[0]], pad_id=0)
    widest = max(len(items[i].input_ids) for i in batches[0])
    assert batch["input_ids"].shape == (len(batches[0]), widest)
    assert batch["attention_mask"].sum().item() == sum(len(items[i].input_ids) for i in batches[0])
    assert length_bucketed_batches(items, 8, seed=0) == batches


def test_pad_to_pads_every_batch_to_exactly_that_width() -> None:
    items = [EncodedCommit(str(i), list(range(1, 2 + (i * 7) % 50)), i % 2) for i in range(50)]
    batches = [collate([items[i] for i in batch], pad_id=0, pad_to=64) for batch in batch_indices(items, 8, 0, 64)]
    assert [batch["input_ids"].shape for batch in batches] == [(8, 64)] * 6 + [(2, 64)]
    assert sum(batch["attention_mask"].sum().item() for batch in batches) == sum(len(i.input_ids) for i in items)
    assert sum(batch["labels"].sum().item() for batch in batches) == sum(item.label for item in items)
    batch = collate(items[:3], pad_id=1, pad_to=64)
    assert batch["input_ids"].shape == (3, 64)
    assert batch["input_ids"][0, len(items[0].input_ids):].eq(1).all()
    with pytest.raises(ValueError, match="pad_to"):
        collate(items, pad_id=0, pad_to=16)
    with pytest.raises(Exception, match="pad_to"):
        DataConfig(max_length=256, pad_to=128)
    assert DataConfig(max_length=256, pad_to=512).pad_to == 512


def test_errors_survive_pickling_across_processes() -> None:
    import pickle

    error = DataError("d.jsonl", 3, "label", "must be 0 or 1")
    assert str(pickle.loads(pickle.dumps(error))) == str(error) == "d.jsonl:3: field 'label': must be 0 or 1"
