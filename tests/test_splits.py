"""The study's data questions in a spec: cross-project splits (whole projects on each side) and low-resource
training fractions (a nested, stratified share of the training split; validation and test unchanged)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from harness import write_spec
from sweeper.config import SplitConfig, TrialConfig
from sweeper.data.records import CommitRecord, read_records
from sweeper.data.split import split_records, train_share
from sweeper.errors import DataError, SpecError, SweeperError
from sweeper.spec import load_spec
from sweeper.sweep.preflight import check_before_trials


@pytest.fixture(scope="module")
def records() -> list[CommitRecord]:
    return read_records("bundled:jitdp").records


def projects(part: list[CommitRecord]) -> set[str]:
    return {record.project for record in part}


def test_named_projects_train_validate_and_test_whole(records: list[CommitRecord]) -> None:
    config = SplitConfig(kind="project", train=["commons-lang", "commons-math"], valid=["commons-io"],
                         test=["commons-codec", "gora"])
    splits = split_records(records, config, seed=0)
    assert projects(splits.train) == {"commons-lang", "commons-math"}
    assert projects(splits.valid) == {"commons-io"} and projects(splits.test) == {"commons-codec", "gora"}
    by_project = Counter(record.project for record in records)
    assert len(splits.train) == by_project["commons-lang"] + by_project["commons-math"]
    assert len(splits.valid) == by_project["commons-io"]
    assert len(splits.test) == by_project["commons-codec"] + by_project["gora"]
    order = {record.id: index for index, record in enumerate(records)}
    assert [order[r.id] for r in splits.valid] == sorted(order[r.id] for r in splits.valid)


def test_without_train_every_other_project_trains(records: list[CommitRecord]) -> None:
    splits = split_records(records, SplitConfig(kind="project", valid=["commons-io"]), seed=0)
    assert projects(splits.train) == projects(records) - {"commons-io"} and not splits.test


def test_shares_draw_whole_projects_seeded(records: list[CommitRecord]) -> None:
    config = SplitConfig(kind="project", valid=0.2, test=0.1)
    splits = split_records(records, config, seed=4)
    every = projects(records)
    assert len(projects(splits.valid)) == round(0.2 * len(every))
    assert len(projects(splits.test)) == round(0.1 * len(every))
    assert projects(splits.train) | projects(splits.valid) | projects(splits.test) == every
    assert not projects(splits.train) & projects(splits.valid) and not projects(splits.valid) & projects(splits.test)
    assert projects(split_records(records, config, seed=4).valid) == projects(splits.valid)
    drawn = {frozenset(projects(split_records(records, config, seed=seed).valid)) for seed in range(5)}
    assert len(drawn) > 1


def test_a_named_side_and_a_drawn_side_do_not_overlap(records: list[CommitRecord]) -> None:
    for seed in range(5):
        splits = split_records(records, SplitConfig(kind="project", valid=0.3, test=["commons-io"]), seed)
        assert projects(splits.test) == {"commons-io"} and "commons-io" not in projects(splits.valid)


def test_an_unknown_project_names_the_data_file_and_the_known_projects(records: list[CommitRecord]) -> None:
    with pytest.raises(DataError) as error:
        split_records(records, SplitConfig(kind="project", valid=["commons-ioo"]), seed=0)
    message = str(error.value)
    assert message.startswith("bundled:jitdp: field 'data.split.valid': unknown project 'commons-ioo'")
    assert all(project in message for project in projects(records))


def test_a_sweep_with_an_unknown_project_stops_before_any_trial(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "cross", {"data.split": {"kind": "project", "valid": ["commons-ioo"]}})
    with pytest.raises(DataError, match=r"unknown project 'commons-ioo'; the file's projects: ant-ivy, commons-bcel"):
        check_before_trials(load_spec(spec), str(spec))


def test_named_training_and_validation_projects_without_a_test(records: list[CommitRecord]) -> None:
    few = [record for record in records if record.project in ("gora", "giraph", "commons-io")]
    splits = split_records(few, SplitConfig(kind="project", train=["gora", "giraph"], valid=["commons-io"]), seed=0)
    assert (projects(splits.train), projects(splits.valid), splits.test) == ({"gora", "giraph"}, {"commons-io"}, [])


def test_shares_that_leave_no_training_project_are_refused(records: list[CommitRecord]) -> None:
    few = [record for record in records if record.project in ("gora", "giraph")]
    with pytest.raises(SweeperError, match=r"data.split.valid 0.5 of 2 projects needs 1, 0 can be drawn"):
        split_records(few, SplitConfig(kind="project", valid=0.5, test=0.4), seed=0)
    with pytest.raises(SweeperError, match=r"data.split.test 0.5 of 2 projects needs 1, 0 can be drawn"):
        split_records(few, SplitConfig(kind="project", train=["gora"], valid=["giraph"], test=0.5), seed=0)


@pytest.mark.parametrize(("split", "field", "words"), [
    ({"kind": "project", "valid": ["commons-io"], "test": ["gora", "commons-io"]}, "data.split",
     "project 'commons-io' is on two sides (valid and test)"),
    ({"kind": "project", "train": ["gora"], "valid": ["gora"]}, "data.split",
     "project 'gora' is on two sides (train and valid)"),
    ({"kind": "time", "valid": ["commons-io"]}, "data.split", "lists of projects (valid) need kind: project"),
    ({"kind": "project", "valid": []}, "data.split.valid", "an empty list of projects"),
])
def test_bad_project_splits_are_spec_errors_with_file_line_and_field(tmp_path: Path, split: dict, field: str,
                                                                     words: str) -> None:
    spec = write_spec(tmp_path, "cross", {"data.split": split})
    with pytest.raises(SpecError) as error:
        load_spec(spec)
    lines = spec.read_text().splitlines()
    start = next(number for number, text in enumerate(lines, 1) if text.strip().startswith("split:"))
    key = field.rsplit(".", 1)[1] + ":"
    line = next(number for number, text in enumerate(lines[start - 1:], start) if text.strip().startswith(key))
    assert str(error.value).startswith(f"{spec}:{line}: field '{field}': {words}")


def test_project_lists_survive_the_flat_params_reproduce_reads() -> None:
    config = TrialConfig().with_overrides({"data.split.kind": "project", "data.split.train": ["a", "b"],
                                           "data.split.valid": "c", "data.split.test": 0.1})
    logged = {key: str(value) for key, value in config.flat().items()}  # MLflow keeps params as text
    again = TrialConfig.from_flat(logged)
    assert again.data.split == config.data.split and again.data.split.valid == ["c"]


def label_share(part: list[CommitRecord]) -> float:
    return sum(record.label or 0 for record in part) / len(part)


def test_train_fraction_is_stratified_nested_and_leaves_validation_and_test_alone(records: list[CommitRecord]) -> None:
    config = SplitConfig(kind="time", valid=0.2, test=0.1)
    full = split_records(records, config, seed=0)
    kept = {}
    for fraction in (0.05, 0.25, 1.0):
        splits = split_records(records, config, seed=0, train_fraction=fraction)
        assert [r.id for r in splits.valid] == [r.id for r in full.valid]
        assert [r.id for r in splits.test] == [r.id for r in full.test]
        counts, full_counts = Counter(r.label for r in splits.train), Counter(r.label for r in full.train)
        assert counts == {label: round(count * fraction) for label, count in full_counts.items()}
        assert abs(label_share(splits.train) - label_share(full.train)) < 0.01
        kept[fraction] = [r.id for r in splits.train]
    assert set(kept[0.05]) < set(kept[0.25]) < set(kept[1.0])
    order = {record.id: index for index, record in enumerate(full.train)}
    assert [order[i] for i in kept[0.25]] == sorted(order[i] for i in kept[0.25])  # time order kept


def test_train_fraction_is_seeded_and_keeps_a_commit_of_each_label(records: list[CommitRecord]) -> None:
    train = records[:400]
    assert train_share(train, 0.1, seed=1) == train_share(train, 0.1, seed=1) != train_share(train, 0.1, seed=2)
    assert Counter(r.label for r in train_share(train, 0.001, seed=0)) == {0: 1, 1: 1}


def test_train_fraction_of_unlabelled_commits() -> None:
    train = read_records("bundled:cmg", "cmg").records[:300]
    assert len(train_share(train, 0.1, seed=0)) == 30


def test_train_fraction_is_a_searchable_trial_key(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, "low", {"search": {"data.train_fraction": {"choice": [0.05, 0.1, 0.25, 1.0]},
                                                             "method": {"choice": ["lora", "adapter"]}}}))
    assert spec.trial({"data.train_fraction": 0.1}).data.train_fraction == 0.1
    with pytest.raises(SpecError, match=r"field 'data.train_fraction': Input should be less than or equal to 1"):
        load_spec(write_spec(tmp_path, "low", {"search": {"data.train_fraction": {"choice": [0.5, 1.5]}}}))
