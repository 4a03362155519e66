"""Rolling-origin evaluation (`data.split.folds`): windows that validate only on commits newer than everything they
trained on, pooled predictions that count each validated commit once, per-window figures, baselines on the same
windows, one encoding for every window, and a rolling trial that repeats and resumes exactly."""

from __future__ import annotations

import csv
import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest

from harness import fresh_cache, last_json, small_trial, sweeper, trial_runs, write_spec
from sweeper.predictions import read_predictions
from sweeper.baselines import baselines_for, fit_baselines
from sweeper.cache import encoded
from sweeper.config import TrialConfig
from sweeper.data.records import CommitRecord, read_records
from sweeper.data.split import rolling_windows, time_split, trial_splits
from sweeper.errors import SpecError, SweeperError
from sweeper.metrics.classification import classification_metrics
from sweeper.tracking.schema import PREDICTIONS_FILE, Role
from sweeper.recipe import prepare_data
from sweeper.trial import run_trial

ROLLING = {"data.sample": 160, "data.max_length": 32, "data.split.valid": 0.3, "data.split.folds": 3,
           "lora.layers": "1"}


@pytest.fixture(scope="module")
def records() -> list[CommitRecord]:
    return read_records("bundled:jitdp").records


def with_ties(records: list[CommitRecord]) -> list[CommitRecord]:
    """The records with every date rounded down to 30 days: many commits share a date, across window edges too."""
    ordered = sorted(records, key=lambda record: record.date)
    start = ordered[0].date
    return [dataclasses.replace(record, date=start + timedelta(days=30 * ((record.date - start).days // 30)))
            for record in records]


@pytest.mark.parametrize("folds", [2, 4, 7])
@pytest.mark.parametrize("tied", [False, True])
def test_each_window_trains_only_on_strictly_older_commits(records: list[CommitRecord], folds: int,
                                                           tied: bool) -> None:
    data = with_ties(records) if tied else records
    splits = time_split(data, 0.3, 0.1)
    history = splits.train + splits.valid
    windows = rolling_windows(splits, folds)
    assert len(windows) == folds
    covered = [index for window in windows for index in window.valid]
    assert covered == list(range(len(splits.train), len(history)))  # the validation split, each commit once
    assert max(len(window.valid) for window in windows) - min(len(window.valid) for window in windows) <= 1
    held_out = {record.id for record in splits.test}
    for window in windows:
        newest_trained = max(history[index].date for index in window.train)
        oldest_validated = min(history[index].date for index in window.valid)
        assert newest_trained < oldest_validated
        assert not set(window.train) & set(window.valid)
        assert not {history[index].id for index in [*window.train, *window.valid]} & held_out
        older = [index for index in range(len(history)) if history[index].date < oldest_validated]
        assert window.train == older  # every older commit trains, not just the training split's
    if tied:  # a tie at an edge leaves the commits dated like the window out of its training set
        assert any(len(window.train) < window.valid.start for window in windows)


def test_rolling_needs_a_time_split_jitdp_all_training_commits_and_enough_commits(
        records: list[CommitRecord]) -> None:
    with pytest.raises(SpecError, match=r"folds \(3\) needs kind: time"):
        TrialConfig().with_overrides({"data.split.kind": "random", "data.split.folds": 3})
    with pytest.raises(SpecError, match=r"data.split.folds.*defect prediction"):
        small_trial("lora", "cmg", **{"data.split.folds": 3})
    with pytest.raises(SpecError, match=r"train_fraction \(0.5\) with split.folds"):
        TrialConfig().with_overrides({"data.split.folds": 3, "data.train_fraction": 0.5})
    splits = time_split(records[:40], 0.1, 0.0)
    with pytest.raises(SweeperError, match=r"4 validation commits cannot make 5 rolling windows"):
        rolling_windows(splits, 5)


def test_a_spec_with_folds_for_cmg_names_its_line(tmp_path: Path) -> None:
    from sweeper.spec import load_spec

    spec = write_spec(tmp_path, "cmg-rolling", {"task": "cmg", "data": {"path": "bundled:cmg", "split": {
        "kind": "time", "valid": 0.3, "folds": 3}}, "metric": "eval_loss", "mode": "min"})
    with pytest.raises(SpecError) as error:
        load_spec(spec)
    assert "data.split.folds" in str(error.value) and f"{spec}:" in str(error.value)


def test_folds_share_the_single_splits_encoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWEEPER_CACHE", str(fresh_cache(tmp_path / "cache")))
    encoded._recent.clear()
    rolling = prepare_data(small_trial("lora", **ROLLING))
    single = prepare_data(small_trial("lora", **{**ROLLING, "data.split.folds": 1}))
    assert rolling.encoding_key == single.encoding_key
    assert [rolling.train, rolling.valid] == [single.train, single.valid]
    assert len(rolling.windows) == 3 and not single.windows
    assert len(list((tmp_path / "cache" / "encoded").glob("*/"))) == 1


def test_a_rolling_trial_pools_every_window_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWEEPER_CACHE", str(fresh_cache(tmp_path / "cache")))
    config = small_trial("lora", **ROLLING)
    reports = []
    result = run_trial(config, tmp_path / "trial", reports.append)
    _, splits = trial_splits(config)
    with (tmp_path / "trial" / PREDICTIONS_FILE).open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["id"] for row in rows] == [record.id for record in splits.valid]  # every commit once, in order
    labels, scores = [int(row["label"]) for row in rows], [float(row["score"]) for row in rows]
    pooled = classification_metrics(labels, scores)
    assert {name: result.metrics[name] for name in pooled} == pooled
    assert result.metrics["auc_ci_low"] <= result.metrics["auc"] <= result.metrics["auc_ci_high"]

    assert [(report.index, report.last) for report in reports] == [(1, False), (2, False), (3, True)]
    seen = 0
    for report in reports:  # each report: the windows so far pooled, and the window's own figures
        seen += int(report.metrics["window_commits"])
        assert report.metrics["auc"] == classification_metrics(labels[:seen], scores[:seen])["auc"]
        window_labels = labels[seen - int(report.metrics["window_commits"]):seen]
        assert report.metrics["window_defective"] == sum(window_labels)
        assert ("window_auc" in report.metrics) == (len(set(window_labels)) == 2)  # undefined on one class
    assert seen == len(splits.valid)
    trained = [report.metrics["window_train_commits"] for report in reports]
    assert trained == sorted(trained) and trained[0] >= len(splits.train) - 5  # ties at the edge may leave some out
    assert result.costs["train_samples"] == sum(trained)
    assert reports[0].tags["sweeper.frozen_cache"].startswith("layer 1: built")  # filled once, by window 1


def test_baselines_are_fitted_per_window_and_pooled_on_the_trials_commits() -> None:
    config = small_trial("lora", **{**ROLLING, "data.sample": 400, "data.split.test": 0.1})
    _, splits = trial_splits(config)
    results = baselines_for(config, resamples=100)
    windows = rolling_windows(splits, 3)
    history = splits.train + splits.valid
    for result in results:
        assert result.valid_ids == [record.id for record in splits.valid]
        pieces = []
        for window in windows:  # a baseline fitted on the window's training commits alone scores the window
            alone, = fit_baselines([history[i] for i in window.train], {"valid": [history[i] for i in window.valid]},
                                   [result.name], resamples=0)
            pieces += alone.valid_scores
        assert result.valid_scores == pieces
        labels = [record.label for record in splits.valid]
        assert result.metrics["valid"]["auc"] == classification_metrics(labels, pieces)["auc"]
        assert "auc_ci_low" in result.metrics["valid"] and "auc" in result.metrics["test"]
        assert [window["commits"] for window in result.windows] == [len(window.valid) for window in windows]


@pytest.mark.slow
def test_a_rolling_trial_repeats_and_resumes_after_a_window_exactly(tmp_path: Path) -> None:
    config = small_trial("lora", **ROLLING)
    checkpoint = tmp_path / "checkpoint"

    class WorkerLost(Exception):
        pass

    def crash_after_first_window(evaluation) -> None:
        evaluation.save(checkpoint)
        raise WorkerLost

    with pytest.raises(WorkerLost):
        run_trial(config, report=crash_after_first_window)
    seen = []
    resumed = run_trial(config, tmp_path / "resumed", report=seen.append, resume_from=checkpoint)
    uninterrupted = run_trial(config, tmp_path / "whole")
    again = run_trial(config, tmp_path / "again")
    assert [evaluation.index for evaluation in seen] == [2, 3]
    assert resumed.metrics == uninterrupted.metrics == again.metrics
    assert resumed.history == uninterrupted.history
    resumed, whole, again = (read_predictions(tmp_path / name / PREDICTIONS_FILE).values
                             for name in ("resumed", "whole", "again"))
    assert resumed == whole == again


@pytest.mark.slow
def test_a_rolling_sweep_logs_windows_compares_baselines_and_reproduces(mlflow_server, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    spec = write_spec(tmp_path, "tiny-rolling", {"data.sample": 200, "data.split": {"kind": "time", "valid": 0.3,
                                                                                    "folds": 2},
                                                 "sweep.trials": 2, "sweep.searcher": "grid"})
    summary = last_json(sweeper("run", str(spec), "--tracking-uri", mlflow_server.uri, "--json", cwd=tmp_path))
    assert summary["trials"]["complete"] == 2
    client = MlflowClient(mlflow_server.uri)
    trials = trial_runs(mlflow_server.uri, summary["parent_run_id"])
    baselines = trial_runs(mlflow_server.uri, summary["parent_run_id"], Role.BASELINE)
    ids = {}
    for run in [*trials, *baselines]:
        folder = tmp_path / run.info.run_id
        folder.mkdir()
        client.download_artifacts(run.info.run_id, PREDICTIONS_FILE, str(folder))
        with (folder / PREDICTIONS_FILE).open() as handle:
            ids[run.info.run_id] = [row["id"] for row in csv.DictReader(handle)]
    assert len({tuple(commits) for commits in ids.values()}) == 1  # trials and baselines: the same commits
    for run in trials:
        assert [m.step for m in client.get_metric_history(run.info.run_id, "auc")] == [1, 2]
        commits = client.get_metric_history(run.info.run_id, "window_commits")
        assert [m.step for m in commits] == [1, 2] and sum(m.value for m in commits) == len(ids[run.info.run_id])
        assert run.data.params["data.split.folds"] == "2" and "best_auc" in run.data.metrics
    for run in baselines:
        assert [m.step for m in client.get_metric_history(run.info.run_id, "window_commits")] == [1, 2]
    outcome = last_json(sweeper("reproduce", trials[0].info.run_id, "--json", "--tracking-uri", mlflow_server.uri,
                                cwd=tmp_path))
    assert outcome["predictions"] == len(ids[trials[0].info.run_id]) and outcome["predictions_differing"] == 0
    assert outcome["reproduced"] == outcome["original"]
    best = last_json(sweeper("best", "--experiment", "tiny-rolling", "--json", "--tracking-uri", mlflow_server.uri,
                             cwd=tmp_path))
    ranked = {row["run_id"]: row["auc"] for row in best["runs"] if row["role"] == Role.TRIAL}
    assert ranked == {run.info.run_id: run.data.metrics["best_auc"] for run in trials}


def test_windows_that_cannot_be_cut_stop_a_sweep_before_any_trial(tmp_path: Path) -> None:
    from sweeper.spec import load_spec
    from sweeper.sweep.preflight import check_before_trials

    path = write_spec(tmp_path, "few", {"data.sample": 40, "data.split": {"kind": "time", "valid": 0.1, "folds": 5}})
    with pytest.raises(SweeperError, match=r"4 validation commits cannot make 5 rolling windows"):
        check_before_trials(load_spec(path), str(path))
