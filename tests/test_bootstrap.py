"""Bootstrap intervals, paired differences, repeats and decision sentences, checked against scipy and sklearn."""

from __future__ import annotations

import doctest
import math
import time
import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from sweeper.metrics import bootstrap
from sweeper.direction import Direction
from sweeper.metrics.bootstrap import (
    CLASSIFICATION_METRICS,
    Difference,
    classification_difference,
    classification_intervals,
    classification_statistic,
    compare_repeats,
    flat_intervals,
    interval,
    paired_difference,
    percentile_interval,
    text_intervals,
    text_statistic,
)
from sweeper.report.wording import decision
from sweeper.metrics.classification import classification_metrics
from sweeper.metrics.text import generation_metrics


def validation_set(n: int = 400, positives: int = 22, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels with `positives` defects and scores that rank them somewhat higher, like a weak model."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(n, dtype=int)
    labels[rng.choice(n, positives, replace=False)] = 1
    scores = np.clip(rng.normal(0.4 + 0.15 * labels, 0.2), 0, 1)
    return labels, scores


def sklearn_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    return roc_auc_score(labels, scores) if 0 < labels.sum() < len(labels) else math.nan


def test_doctests() -> None:
    assert doctest.testmod(bootstrap).failed == 0


# --- against references ---

@pytest.mark.parametrize("method", ["BCa", "percentile"])
def test_same_interval_as_scipy_called_directly(method: str) -> None:
    x = np.random.default_rng(1).exponential(size=60)
    expected = stats.bootstrap((x,), np.mean, n_resamples=1000, method=method,
                               rng=np.random.default_rng(3)).confidence_interval
    plain = interval(lambda i: x[i].mean(), len(x), seed=3, method=method)
    vectorized = interval(lambda rows: x[rows].mean(axis=1), len(x), seed=3, method=method, vectorized=True)
    np.testing.assert_allclose(plain, (expected.low, expected.high), rtol=1e-12)
    np.testing.assert_allclose(vectorized, plain, rtol=1e-12)


def test_percentile_interval_enumerated_by_hand() -> None:
    # mean of 3 draws from [0, 0, 1]: P(0) = 8/27, P(1/3) = 12/27, P(2/3) = 6/27, P(1) = 1/27.
    # 90 %: the 5 % quantile is 0 (P(0) = 0.30 > 0.05) and the 95 % quantile is 2/3 (P(<= 2/3) = 26/27 = 0.963).
    x = np.array([0.0, 0.0, 1.0])
    low, high = interval(lambda i: x[i].mean(), 3, resamples=20000, confidence=0.9, method="percentile")
    assert (low, high) == (0.0, pytest.approx(2 / 3))


@pytest.mark.parametrize("method", ["BCa", "percentile"])
def test_interval_of_a_normal_mean_is_the_textbook_one(method: str) -> None:
    x = np.random.default_rng(2).normal(size=400)
    half = stats.norm.ppf(0.975) * x.std() / math.sqrt(len(x))
    low, high = interval(lambda rows: x[rows].mean(axis=1), len(x), resamples=4000, method=method, vectorized=True)
    assert low == pytest.approx(x.mean() - half, abs=0.01)
    assert high == pytest.approx(x.mean() + half, abs=0.01)


def test_vectorized_metrics_equal_classification_metrics_on_resamples() -> None:
    labels, scores = validation_set(120, 15)
    scores = np.round(scores, 1)  # ties, as a poorly calibrated model gives: max_f1 and AUC must handle them
    rows = np.random.default_rng(4).integers(0, len(labels), (40, len(labels)))
    values = classification_statistic(labels, scores)(rows)
    for r, row in enumerate(rows):
        expected = classification_metrics(labels[row].tolist(), scores[row].tolist())
        for j, name in enumerate(CLASSIFICATION_METRICS):
            assert values[j, r] == pytest.approx(expected[name], abs=1e-12), name


def test_auc_interval_equals_a_plain_sklearn_statistic() -> None:
    labels, scores = validation_set(200, 11)
    fast = classification_intervals(labels, scores, resamples=200, seed=5)["auc"]
    slow = interval(lambda i: sklearn_auc(labels[i], scores[i]), len(labels), resamples=200, seed=5)
    np.testing.assert_allclose(fast, slow, rtol=1e-10)


def test_auc_interval_width_with_22_positives() -> None:
    labels, scores = validation_set()
    low, high = classification_intervals(labels, scores, metrics=["auc"])["auc"]
    assert 0.12 < high - low < 0.25  # about +-0.08, as DESIGN.md says


def test_text_statistic_equals_generation_metrics_on_resamples() -> None:
    references = ["fix typo in readme", "add tests for the parser", "bump version", "refactor session handling",
                  "remove unused import", "docs: update changelog"]
    predictions = ["fix typo in docs", "add test for parser", "bump version", "refactor the session",
                   "fix import", "update changelog"]
    rows = np.random.default_rng(6).integers(0, len(references), (20, len(references)))
    values = text_statistic(references, predictions)(rows)
    for r, row in enumerate(rows):
        expected = generation_metrics([references[i] for i in row], [predictions[i] for i in row])
        for j, name in enumerate(bootstrap.TEXT_METRICS):
            assert values[j, r] == pytest.approx(expected[name], abs=1e-9), name
    found = text_intervals(references, predictions, resamples=200)
    point = generation_metrics(references, predictions)
    assert all(found[name][0] <= point[name] <= found[name][1] for name in ("bleu", "rouge_l", "exact_match"))


def test_classification_difference_value_is_the_sklearn_difference() -> None:
    labels, a = validation_set(seed=7)
    b = np.random.default_rng(8).uniform(size=len(labels))
    d = classification_difference(labels, a, b, resamples=300)
    assert d.value == pytest.approx(roc_auc_score(labels, a) - roc_auc_score(labels, b))
    assert d.low < d.value < d.high


# --- properties ---

def test_same_seed_same_interval_other_seed_other_interval() -> None:
    labels, scores = validation_set()
    first = classification_intervals(labels, scores, seed=11)
    assert classification_intervals(labels, scores, seed=11) == first
    assert classification_intervals(labels, scores, seed=12)["auc"] != first["auc"]


def test_paired_interval_is_narrower_when_scores_are_correlated() -> None:
    rng = np.random.default_rng(9)
    labels, _ = validation_set(seed=9)
    difficulty = rng.normal(labels * 0.8, 1.0)  # shared by both models: the commits' own difficulty
    a = difficulty + rng.normal(0, 0.3, len(labels))
    b = difficulty + rng.normal(0, 0.3, len(labels))
    auc_a = classification_statistic(labels, a, metrics=["auc"])
    auc_b = classification_statistic(labels, b, metrics=["auc"])
    paired = paired_difference(auc_a, auc_b, len(labels), method="percentile", vectorized=True)
    index = np.arange(len(labels))
    unpaired = stats.bootstrap(  # two independent resamples: what comparing two separate intervals amounts to
        (index, index), lambda i, j, axis=-1: auc_a(np.atleast_2d(i))[0] - auc_b(np.atleast_2d(j))[0],
        n_resamples=1000, method="percentile", vectorized=True, rng=np.random.default_rng(0)).confidence_interval
    assert paired.high - paired.low < 0.6 * (unpaired.high - unpaired.low)


def test_flat_names() -> None:
    assert flat_intervals({"auc": (0.6, 0.8), "f1": (0.1, 0.3)}) == {
        "auc_ci_low": 0.6, "auc_ci_high": 0.8, "f1_ci_low": 0.1, "f1_ci_high": 0.3}


# --- degenerate inputs ---

def test_too_few_items_give_nan() -> None:
    assert all(math.isnan(v) for v in interval(lambda i: 1.0, 1))
    assert all(math.isnan(v) for v in interval(lambda i: 1.0, 0))
    assert all(math.isnan(v) for v in classification_intervals([1], [0.3])["auc"])


def test_one_class_gives_nan_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = classification_intervals([0] * 30, np.linspace(0, 1, 30), resamples=200)
    assert all(math.isnan(v) for pair in found.values() for v in pair)


def test_resamples_without_a_positive_are_dropped_not_fatal() -> None:
    labels = np.array([0, 0, 0, 1, 0, 0, 0, 0, 0, 0])  # a resample misses the positive with probability 0.9^10 = 35 %
    scores = np.linspace(0.9, 0.0, 10)  # the positive ranks above 6 of the 9 negatives
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        low, high = classification_intervals(labels, scores, resamples=500)["auc"]
    auc = classification_statistic(labels, scores, metrics=["auc"])
    with warnings.catch_warnings():  # scipy warns of the NaN it gets; `interval` handles them
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        distribution = stats.bootstrap((np.arange(10),), lambda i, axis=-1: auc(np.atleast_2d(i))[0], vectorized=True,
                                       n_resamples=500, method="percentile",
                                       rng=np.random.default_rng(0)).bootstrap_distribution
    assert np.isnan(distribution).mean() > 0.2
    assert (low, high) == percentile_interval(distribution)
    assert low < 6 / 9 < high


def test_constant_metric_falls_back_to_percentile() -> None:
    labels, _ = validation_set()
    nothing_predicted = np.full(len(labels), 0.1)  # below the threshold: precision and recall are 0 everywhere
    found = classification_intervals(labels, nothing_predicted, resamples=200)
    assert found["precision"] == found["recall"] == found["f1"] == (0.0, 0.0)
    assert found["auc"] == (0.5, 0.5)


def test_percentile_interval_drops_nan_like_nanquantile() -> None:
    values = np.random.default_rng(10).normal(size=200)
    values[::7] = np.nan
    assert percentile_interval(values) == pytest.approx(tuple(np.nanquantile(values, [0.025, 0.975])))
    assert all(math.isnan(v) for v in percentile_interval(np.array([np.nan, 1.0])))


def test_speed_of_every_jitdp_metric() -> None:
    labels, scores = validation_set()
    start = time.perf_counter()
    classification_intervals(labels, scores, resamples=1000)
    assert time.perf_counter() - start < 2.0


# --- repeats ---

def test_compare_repeats_is_welch_by_hand() -> None:
    a, b = [0.71, 0.74, 0.70], [0.66, 0.69, 0.61, 0.64]
    va, vb = np.var(a, ddof=1) / 3, np.var(b, ddof=1) / 4
    t = (np.mean(a) - np.mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 3)  # Welch-Satterthwaite
    result = compare_repeats(a, b)
    assert result.p_value == pytest.approx(2 * stats.t.sf(abs(t), df))
    assert result.standard_error == pytest.approx(math.sqrt(va + vb))
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert result.difference_ci == pytest.approx((np.mean(a) - np.mean(b) - half, np.mean(a) - np.mean(b) + half))
    mean_half = stats.t.ppf(0.975, 2) * np.std(a, ddof=1) / math.sqrt(3)
    assert result.ci_a == pytest.approx((np.mean(a) - mean_half, np.mean(a) + mean_half))
    assert (result.n_a, result.n_b, result.sd_a) == (3, 4, pytest.approx(np.std(a, ddof=1)))


def test_compare_repeats_degenerate() -> None:
    one = compare_repeats([0.7], [0.6, 0.65])
    assert math.isnan(one.p_value) and math.isnan(one.sd_a) and one.difference == pytest.approx(0.075)
    same = compare_repeats([0.7, 0.7], [0.7, 0.7])
    assert math.isnan(same.p_value) and same.ci_a == (0.7, 0.7)
    with pytest.raises(ValueError):
        compare_repeats([], [0.5])


# --- decisions ---

def test_decision_sentences() -> None:
    assert decision("lora", "full", "auc", Difference(-0.012, -0.041, 0.015)) == \
        "lora vs full: AUC -0.012 [-0.041, +0.015]: no clear difference"
    assert decision("lora", "full", "auc", Difference(-0.052, -0.081, -0.020)) == \
        "lora vs full: AUC -0.052 [-0.081, -0.020]: full is better"
    assert decision("lora", "lapredict", "f1", Difference(0.05, 0.01, 0.09)) == \
        "lora vs lapredict: F1 +0.050 [+0.010, +0.090]: lora is better"
    assert decision("a", "b", "eval_loss", Difference(0.05, 0.01, 0.09), direction=Direction.MIN).endswith("b is better")
    lora, full = [0.70, 0.71, 0.69], [0.71, 0.72, 0.715]
    with_repeats = decision("lora", "full", "auc", Difference(-0.012, -0.041, 0.015), compare_repeats(lora, full))
    assert with_repeats.startswith("lora vs full: AUC -0.012 [-0.041, +0.015]: no clear difference; "
                                   "over 3 seeds -0.015 ± ")
    assert with_repeats.endswith(f"(s.e.), Welch p = {stats.ttest_ind(lora, full, equal_var=False).pvalue:.2f}")
