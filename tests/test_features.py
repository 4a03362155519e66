"""Expert features: the matrix, errors that name file, line and field, and a scaler fitted on training rows only."""

from __future__ import annotations

import doctest
import gzip
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

from sweeper.data import features as features_module
from sweeper.data.features import FEATURE_NAMES, FeatureScaler, count_added_lines, feature_matrix, has_features
from sweeper.data.records import read_records
from sweeper.data.split import time_split
from sweeper.errors import DataError

FEATURES = dict(zip(FEATURE_NAMES, [10, 2, 1, 1, 1, 0.0, 3, -20.5, 4, -1.5, 100, 50.2, 80, 1]))


def line(number: int, **changes: object) -> dict:
    row = {"id": f"p@{number}", "project": "p", "commit": str(number), "date": f"2010-01-{number:02d}T00:00:00+00:00",
           "message": "fix", "diff": "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n", "label": number % 2,
           "features": dict(FEATURES)}
    row.update(changes)
    return row


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def bundled_split() -> tuple[np.ndarray, np.ndarray]:
    records = read_records("bundled:jitdp").records[:400]
    splits = time_split(records, 0.25, 0.0)
    return feature_matrix(splits.train), feature_matrix(splits.valid)


def test_doctests() -> None:
    assert doctest.testmod(features_module).failed == 0


def test_matrix_columns_follow_the_files_order() -> None:
    raw = json.loads(gzip.decompress(Path(features_module.__file__).parent.joinpath(
        "bundled", "jitdp-sample.jsonl.gz").read_bytes()).splitlines()[0])
    first = read_records("bundled:jitdp").records[0]
    assert tuple(raw["features"]) == FEATURE_NAMES
    assert feature_matrix([first])[0].tolist() == [float(v) for v in raw["features"].values()]


def test_records_know_their_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", [line(1), line(2)])
    records = read_records(str(path)).records
    assert [(r.source, r.line) for r in records] == [(str(path), 1), (str(path), 2)]
    assert records[0] == replace(records[0], source="elsewhere", line=9)  # where it was read is not its identity


def test_missing_feature_names_file_line_and_field(tmp_path: Path) -> None:
    without_lt = {k: v for k, v in FEATURES.items() if k != "lt"}
    path = write(tmp_path / "d.jsonl", [line(1), line(2, features=without_lt), line(3)])
    records = read_records(str(path)).records
    with pytest.raises(DataError) as error:
        feature_matrix(records)
    assert (error.value.source, error.value.line, error.value.field) == (str(path), 2, "features.lt")
    assert str(error.value).startswith(f"{path}:2: field 'features.lt': missing")
    assert not has_features(records) and has_features(records[:1])


def test_record_without_features_and_non_finite_values(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    not_a_number = json.dumps(line(3)).replace('"la": 10', '"la": NaN')  # Python's json reads NaN
    rows = [json.dumps(line(1)), json.dumps(line(2, features=None)), not_a_number]
    path.write_text("\n".join(rows) + "\n")
    records = read_records(str(path)).records
    with pytest.raises(DataError, match=r"d\.jsonl:2: field 'features\.la': missing; the record has no features"):
        feature_matrix(records[:2])
    with pytest.raises(DataError, match=r"d\.jsonl:3: field 'features\.la': not a finite number"):
        feature_matrix(records[2:])


def test_statistics_come_from_training_rows_by_hand(bundled_split: tuple[np.ndarray, np.ndarray]) -> None:
    train, valid = bundled_split
    scaler = FeatureScaler().fit(train)
    logged = np.sign(train) * np.log(1 + np.abs(train))
    reference = StandardScaler().fit(logged)
    np.testing.assert_allclose(scaler.mean, reference.mean_, rtol=1e-12)
    np.testing.assert_allclose(scaler.scale, reference.scale_, rtol=1e-12)
    np.testing.assert_allclose(scaler.transform(valid), reference.transform(np.sign(valid) * np.log1p(np.abs(valid))),
                               rtol=1e-10, atol=1e-12)
    assert scaler.rows == len(train)


def test_transforming_validation_rows_leaves_the_statistics_alone(bundled_split) -> None:
    train, valid = bundled_split
    scaler = FeatureScaler().fit(train)
    before = scaler.to_json()
    scaler.transform(valid)
    scaler.transform(np.vstack([train, valid]))
    assert scaler.to_json() == before


def test_fitting_on_all_rows_gives_other_outputs(bundled_split) -> None:
    train, valid = bundled_split
    on_train = FeatureScaler().fit(train).transform(valid)
    on_all = FeatureScaler().fit(np.vstack([train, valid])).transform(valid)
    assert not np.allclose(on_train, on_all)


def test_json_round_trip_gives_identical_outputs(bundled_split) -> None:
    train, valid = bundled_split
    scaler = FeatureScaler().fit(train)
    again = FeatureScaler.from_json(scaler.to_json())
    assert np.array_equal(again.transform(valid), scaler.transform(valid))
    assert json.loads(scaler.to_json())["names"] == list(FEATURE_NAMES)
    with pytest.raises(ValueError, match="not a FeatureScaler"):
        FeatureScaler.from_json('{"mean": []}')


def test_negative_and_huge_values_stay_finite_and_ordered() -> None:
    column = np.array([-1557.0, -1.0, 0.0, 1.0, 169.0, 4327.0, 1e9])
    matrix = np.tile(column[:, None], (1, len(FEATURE_NAMES)))
    matrix[:, -1] = 1.0  # a constant column (fix) becomes 0, not NaN
    scaled = FeatureScaler().fit(matrix).transform(matrix)
    assert np.isfinite(scaled).all() and (np.diff(scaled[:, 0]) > 0).all()
    assert (scaled[:, -1] == 0).all()
    assert np.abs(scaled).max() < 5


def test_scaler_errors() -> None:
    with pytest.raises(ValueError, match="before fit"):
        FeatureScaler().transform(np.zeros((1, 14)))
    with pytest.raises(ValueError, match="14 columns"):
        FeatureScaler().fit(np.zeros((3, 2)))


def test_count_added_lines() -> None:
    diff = ("diff --git a/A.java b/A.java\n--- a/A.java\n+++ b/A.java\n@@ -1,3 +1,4 @@\n ctx\n-x\n+y\n+\n+++z\n"
            "diff --git a/B b/B\nnew file mode 100644\n--- /dev/null\n+++ b/B\n@@ -0,0 +1 @@\n+b\n")
    assert count_added_lines(diff) == 4  # y, the blank line, "++z", b; never the +++ headers
