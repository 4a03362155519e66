"""JIT-DP baselines on the bundled sample (the smoke spec's split) and on hand-made cases with known answers."""

from __future__ import annotations

import doctest
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from sweeper import baselines
from sweeper.baselines import fit_baselines
from sweeper.config import SplitConfig
from sweeper.data.features import FEATURE_NAMES, count_added_lines, feature_matrix
from sweeper.data.records import CommitRecord, read_records, sample_records
from sweeper.data.split import Splits, split_records
from sweeper.errors import DataError
from sweeper.sweep.followups import baseline_metrics
from sweeper.recorded.sweeps import TrialRun

CI_KEYS = {f"{m}_ci_{side}" for m in ("auc", "f1", "mcc", "precision", "recall", "max_f1") for side in ("low", "high")}


@pytest.fixture(scope="module")
def smoke() -> Splits:
    """The smoke spec's data: bundled:jitdp, 600 sampled with seed 0, time split with 25 % validation."""
    records = sample_records(read_records("bundled:jitdp").records, 600, 0)
    return split_records(records, SplitConfig(kind="time", valid=0.25), 0)


def labels_of(records: list[CommitRecord]) -> np.ndarray:
    return np.array([r.label for r in records])


def commit(number: int, label: int, la: float, with_features: bool = True) -> CommitRecord:
    diff = "--- a/x\n+++ b/x\n@@ -1 +1 @@\n" + "+line\n" * int(la)
    features = dict.fromkeys(FEATURE_NAMES, 1.0) | {"la": float(la)} if with_features else {}
    return CommitRecord(f"p@{number}", datetime(2020, 1, 1, tzinfo=timezone.utc) + timedelta(days=number), "m",
                        diff, "p", label, features)


def test_doctests() -> None:
    assert doctest.testmod(baselines).failed == 0


def test_both_baselines_on_the_smoke_split(smoke: Splits) -> None:
    lapredict, expert = fit_baselines(smoke.train, {"valid": smoke.valid}, resamples=200)
    assert (lapredict.name, lapredict.parameters, expert.name, expert.parameters) == ("lapredict", 2, "expert_lr", 15)
    assert lapredict.valid_ids == [r.id for r in smoke.valid] and len(lapredict.valid_scores) == len(smoke.valid)
    for result in (lapredict, expert):
        valid = result.metrics["valid"]
        assert CI_KEYS <= set(valid) and not result.skipped and result.fit_seconds > 0
        assert valid["auc_ci_low"] <= valid["auc"] <= valid["auc_ci_high"]
    assert "la from the records' features" in lapredict.description


def test_lapredict_ranks_commits_by_lines_added(smoke: Splits) -> None:
    # one feature through a logistic regression with a positive slope: the ranking, hence AUC, is la's own
    lapredict, = fit_baselines(smoke.train, {"valid": smoke.valid}, names=["lapredict"], resamples=50)
    la = [r.features["la"] for r in smoke.valid]
    assert lapredict.metrics["valid"]["auc"] == pytest.approx(roc_auc_score(labels_of(smoke.valid), la))


def test_expert_lr_equals_an_sklearn_pipeline_fitted_on_train(smoke: Splits) -> None:
    expert, = fit_baselines(smoke.train, {"valid": smoke.valid}, names=["expert_lr"], resamples=50)
    pipeline = make_pipeline(FunctionTransformer(lambda x: np.sign(x) * np.log1p(np.abs(x))), StandardScaler(),
                             LogisticRegression(class_weight="balanced", max_iter=1000))
    pipeline.fit(feature_matrix(smoke.train), labels_of(smoke.train))
    np.testing.assert_allclose(expert.valid_scores, pipeline.predict_proba(feature_matrix(smoke.valid))[:, 1],
                               rtol=1e-6)


def test_validation_rows_do_not_change_a_validation_score(smoke: Splits) -> None:
    """Scaled with training statistics only: a validation commit's score ignores the other validation commits."""
    alone, = fit_baselines(smoke.train, {"valid": smoke.valid[:1]}, names=["expert_lr"], resamples=10)
    together, = fit_baselines(smoke.train, {"valid": smoke.valid}, names=["expert_lr"], resamples=10)
    assert alone.valid_scores[0] == together.valid_scores[0]


def test_perfectly_separable_la_gives_auc_1() -> None:
    train = [commit(i, int(i % 5 == 0), 100 + i if i % 5 == 0 else i % 7) for i in range(60)]
    valid = [commit(100 + i, int(i % 4 == 0), 300 if i % 4 == 0 else i % 9) for i in range(20)]
    lapredict, = fit_baselines(train, {"valid": valid, "test": valid[:10]}, names=["lapredict"], resamples=100)
    assert lapredict.metrics["valid"]["auc"] == lapredict.metrics["valid"]["max_f1"] == 1.0
    assert lapredict.metrics["valid"]["auc_ci_low"] == 1.0
    assert lapredict.metrics["test"]["auc"] == lapredict.metrics["test"]["auc_ci_low"] == 1.0  # the held-out section's


def test_without_features_lapredict_counts_the_diff_and_expert_lr_is_skipped() -> None:
    # larger commits are defective more often, with overlap: a positive slope, and an AUC between 0.5 and 1
    train = [commit(i, int(i % 3 == 0), (i * 7) % 23 + 8 * (i % 3 == 0), with_features=False) for i in range(40)]
    valid = [commit(100 + i, int(i % 3 == 0), (i * 5) % 19 + 8 * (i % 3 == 0), with_features=i != 4) for i in range(15)]
    lapredict, expert = fit_baselines(train, {"valid": valid}, resamples=50)
    assert "counted from the diff" in lapredict.description
    counted = [count_added_lines(r.diff) for r in valid]
    assert 0.5 < lapredict.metrics["valid"]["auc"] < 1
    assert lapredict.metrics["valid"]["auc"] == pytest.approx(roc_auc_score(labels_of(valid), counted))
    assert expert.skipped.startswith("needs the 14 expert features") and "features.la" in expert.skipped
    assert expert.metrics == {} and expert.valid_scores == []


def test_one_class_training_split_is_skipped() -> None:
    train = [commit(i, 0, i) for i in range(10)]
    results = fit_baselines(train, {"valid": [commit(50, 1, 3), commit(51, 0, 4)]})
    assert all(r.skipped == "the training split has one class only" for r in results)


def test_unlabelled_record_is_an_error_and_unknown_name_too() -> None:
    train = [commit(i, i % 2, i) for i in range(10)]
    unlabelled = replace(commit(20, 0, 1), label=None, source="new.jsonl", line=3)
    with pytest.raises(DataError, match=r"new\.jsonl:3: field 'label'"):
        fit_baselines(train, {"valid": [unlabelled]})
    with pytest.raises(ValueError, match="unknown baseline"):
        fit_baselines(train, {"valid": train}, names=["svm"])


def test_a_baselines_test_figures_are_logged_under_the_names_the_held_out_section_reads() -> None:
    train = [commit(i, int(i % 5 == 0), 100 + i if i % 5 == 0 else i % 7) for i in range(60)]
    valid = [commit(100 + i, int(i % 4 == 0), 300 - i if i % 4 == 0 else i % 9) for i in range(20)]
    lapredict, = fit_baselines(train, {"valid": valid, "test": valid[::-1]}, names=["lapredict"], resamples=50)
    logged = baseline_metrics(lapredict)
    run = TrialRun("r", "lapredict", -1, "lapredict", "complete", {}, logged, role="baseline")
    test = lapredict.metrics["test"]
    assert run.value("test_auc") == test["auc"] and run.interval("test_auc") == (test["auc_ci_low"], test["auc_ci_high"])
    assert run.interval("auc") == (lapredict.metrics["valid"]["auc_ci_low"], lapredict.metrics["valid"]["auc_ci_high"])
