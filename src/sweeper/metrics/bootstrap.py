"""How sure is a validation metric? Bootstrap intervals, paired differences and repeats over seeds.

A JIT-DP validation set of 400 commits holds about 20 defective ones: a 95 % interval of AUC is then about
+-0.08 wide, so a 0.02 gap between two methods says nothing by itself. Everything here resamples the
*indices* of the validation commits with `scipy.stats.bootstrap`: a statistic maps an index array to a
metric, so one resample can drive any metric, and two models scored on the same commits are compared on
the same resamples (a paired bootstrap).

    >>> labels, scores = [0, 0, 1, 0, 1, 1, 0, 1], [.1, .3, .7, .2, .4, .9, .6, .8]
    >>> ci = classification_intervals(labels, scores, resamples=200)
    >>> ci["auc"][0] <= 0.875 <= ci["auc"][1]
    True
    >>> sorted(flat_intervals({"auc": (0.7, 0.9)}).items())
    [('auc_ci_high', 0.9), ('auc_ci_low', 0.7)]

Undefined resamples: a statistic returns NaN where its metric is undefined on a resample (the classification
statistics do so for every resample that holds one class only). Those resamples are dropped and the
percentile interval of the others is returned (BCa needs every resample). With 400 commits and 20 positives
a resample without a positive has probability ~(380/400)^400 ~ 1e-9: it only happens on toy sets.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

from sweeper.metrics.text import MAX_ORDER, exact_match, ngram_counts, rouge_l, sentence_bleu, tokenize

Statistic = Callable[[np.ndarray], float]
"""Maps an index array (m,) of validation items to one metric value (NaN where undefined)."""
VectorStatistic = Callable[[np.ndarray], np.ndarray]
"""Maps index arrays (r, m), one resample per row, to values (r,) or, for several metrics, (k, r)."""
IntervalMethod = Literal["BCa", "percentile"]

CLASSIFICATION_METRICS = ("auc", "f1", "mcc", "precision", "recall", "max_f1")
TEXT_METRICS = ("bleu", "corpus_bleu", "rouge_l", "exact_match")


# --- the core: one scipy.stats.bootstrap call over the indices -----------------------------------------

def interval(statistic: Statistic | VectorStatistic, n: int, *, resamples: int = 1000, confidence: float = 0.95,
             seed: int = 0, method: IntervalMethod = "BCa", vectorized: bool = False) -> tuple[float, float]:
    """A bootstrap confidence interval of `statistic` over `n` items: (low, high).

    `statistic(indices)` computes the metric on the items at `indices` (repeats allowed). With
    `vectorized=True` it takes a 2-D array, one resample per row, and returns one value per row: much faster.
    BCa (bias-corrected and accelerated, Efron 1987) by default: it corrects the percentile interval for a
    skewed or biased bootstrap distribution, as AUC near 1 or F1 near 0 have. When BCa cannot be computed
    (a degenerate distribution, e.g. precision 0 in every resample, or resamples where the metric is
    undefined) the percentile interval of the defined resamples is returned instead. (nan, nan) when n < 2,
    when the metric is undefined on all items, or when fewer than two resamples are defined.
    Same seed, same interval.

        >>> values = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0])
        >>> low, high = interval(lambda i: values[i].mean(), len(values), seed=1)
        >>> low < float(values.mean()) < high
        True
    """
    return _intervals(_as_vector(statistic, vectorized, 1), n, 1, resamples, confidence, seed, method)[0]


def intervals(statistic: VectorStatistic, n: int, names: Sequence[str], *, resamples: int = 1000,
              confidence: float = 0.95, seed: int = 0, method: IntervalMethod = "BCa") -> dict[str, tuple[float, float]]:
    """Intervals of several metrics from one vectorized statistic, all on the same resamples.

    `statistic(indices)` takes (r, m) index arrays and returns (len(names), r) values; see `interval`.

        >>> x = np.arange(10.0)
        >>> mean_and_max = lambda i: np.stack([x[i].mean(-1), x[i].max(-1)])
        >>> intervals(mean_and_max, 10, ["mean", "max"], method="percentile")["max"][1]
        9.0
    """
    found = _intervals(_as_vector(statistic, True, len(names)), n, len(names), resamples, confidence, seed, method)
    return dict(zip(names, found))


def _as_vector(statistic: Statistic | VectorStatistic, vectorized: bool, k: int) -> Callable[[np.ndarray], np.ndarray]:
    """A statistic that takes (r, m) indices and returns (k, r) floats, whatever the caller gave."""
    if vectorized:
        return lambda rows: np.asarray(statistic(rows), dtype=np.float64).reshape(k, len(rows))
    return lambda rows: np.asarray([statistic(row) for row in rows], dtype=np.float64).reshape(len(rows), k).T


def _intervals(statistic: Callable[[np.ndarray], np.ndarray], n: int, k: int, resamples: int, confidence: float,
               seed: int, method: IntervalMethod) -> list[tuple[float, float]]:
    """`scipy.stats.bootstrap` on `arange(n)`; per metric, its interval or the percentile fallback."""
    if n < 2:
        return [(math.nan, math.nan)] * k

    def scipy_statistic(indices: np.ndarray, axis: int = -1) -> np.ndarray:
        values = statistic(np.atleast_2d(indices))  # (k, r)
        return values[:, 0] if indices.ndim == 1 else values

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", (stats.DegenerateDataWarning, RuntimeWarning))
        result = stats.bootstrap((np.arange(n),), scipy_statistic, n_resamples=resamples, vectorized=True,
                                 confidence_level=confidence, method=method, rng=np.random.default_rng(seed))
        point = scipy_statistic(np.arange(n))
    lows = np.atleast_1d(result.confidence_interval.low)
    highs = np.atleast_1d(result.confidence_interval.high)
    distribution = np.atleast_2d(result.bootstrap_distribution)
    found = []
    for j in range(k):
        if np.isnan(point[j]):
            found.append((math.nan, math.nan))
        elif np.isnan(distribution[j]).any() or np.isnan(lows[j]) or np.isnan(highs[j]):
            found.append(percentile_interval(distribution[j], confidence))
        else:
            found.append((float(lows[j]), float(highs[j])))
    return found


def percentile_interval(distribution: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The percentile interval of the defined (non-NaN) values of a bootstrap distribution.

    The same quantiles as `scipy.stats.bootstrap(..., method="percentile")` (linear interpolation), on the
    resamples where the metric is defined. (nan, nan) when fewer than two are.

        >>> percentile_interval(np.array([0.0, np.nan, 1.0, 2.0, 3.0, 4.0]), 0.5)
        (1.0, 3.0)
    """
    defined = distribution[~np.isnan(distribution)]
    if defined.size < 2:
        return math.nan, math.nan
    alpha = (1 - confidence) / 2
    low, high = np.quantile(defined, [alpha, 1 - alpha])
    return float(low), float(high)


def flat_intervals(found: dict[str, tuple[float, float]]) -> dict[str, float]:
    """`{"auc": (lo, hi)}` -> `{"auc_ci_low": lo, "auc_ci_high": hi}`, the names a trial logs them under."""
    return {f"{name}_ci_{side}": value for name, (low, high) in found.items()
            for side, value in (("low", low), ("high", high))}


# --- defect prediction ----------------------------------------------------------------------------------

def classification_statistic(labels: Sequence[int], scores: Sequence[float], threshold: float = 0.5,
                             metrics: Sequence[str] = CLASSIFICATION_METRICS) -> VectorStatistic:
    """A vectorized statistic: (r, m) indices -> (len(metrics), r) values of `metrics` on each resample.

    The same definitions as `sweeper.metrics.classification.classification_metrics` (the tests check it
    against scikit-learn): precision, recall, F1 and MCC at `threshold` (0 where a denominator is 0),
    AUC from ranks (ties averaged, as `roc_auc_score`), max_f1 the highest F1 over all thresholds. A resample
    with one class only gives NaN for every metric (undefined; `interval` drops it).

        >>> stat = classification_statistic([0, 1, 1, 0], [0.1, 0.8, 0.4, 0.3], metrics=["auc", "recall"])
        >>> stat(np.array([[0, 1, 2, 3], [0, 0, 1, 2]])).tolist()
        [[1.0, 1.0], [0.5, 0.5]]
    """
    unknown = sorted(set(metrics) - set(CLASSIFICATION_METRICS))
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(CLASSIFICATION_METRICS)}")
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels but {s.size} scores")

    def statistic(rows: np.ndarray) -> np.ndarray:
        rows = np.atleast_2d(rows)
        ys, ss = y[rows], s[rows]
        positives = ys.sum(axis=1)
        defined = (positives > 0) & (positives < ys.shape[1])
        values = {name: compute(ys, ss) for name, compute in _classification_parts(threshold, metrics).items()}
        return np.stack([np.where(defined, values[name], np.nan) for name in metrics])

    return statistic


def _classification_parts(threshold: float, metrics: Sequence[str]) -> dict[str, Callable]:
    """Each metric as a function of (labels (r, m) bool, scores (r, m)) -> (r,)."""
    def confusion(ys: np.ndarray, ss: np.ndarray) -> tuple[np.ndarray, ...]:
        predicted = ss >= threshold
        tp = (ys & predicted).sum(1).astype(np.float64)
        fp = (~ys & predicted).sum(1).astype(np.float64)
        fn = (ys & ~predicted).sum(1).astype(np.float64)
        return tp, fp, fn, ys.shape[1] - tp - fp - fn

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)

    def f1(ys, ss):
        tp, fp, fn, _ = confusion(ys, ss)
        return ratio(2 * tp, 2 * tp + fp + fn)

    def precision(ys, ss):
        tp, fp, _, _ = confusion(ys, ss)
        return ratio(tp, tp + fp)

    def recall(ys, ss):
        tp, _, fn, _ = confusion(ys, ss)
        return ratio(tp, tp + fn)

    def mcc(ys, ss):
        tp, fp, fn, tn = confusion(ys, ss)
        return ratio(tp * tn - fp * fn, np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)))

    parts = {"auc": _auc, "f1": f1, "mcc": mcc, "precision": precision, "recall": recall, "max_f1": _max_f1}
    return {name: parts[name] for name in metrics}


def _auc(ys: np.ndarray, ss: np.ndarray) -> np.ndarray:
    """AUC-ROC per row by the rank-sum (Mann-Whitney U) formula, ties averaged; NaN with one class."""
    ranks = stats.rankdata(ss, axis=1)
    positives = ys.sum(1).astype(np.float64)
    negatives = ys.shape[1] - positives
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((ranks * ys).sum(1) - positives * (positives + 1) / 2) / (positives * negatives)


def _max_f1(ys: np.ndarray, ss: np.ndarray) -> np.ndarray:
    """The highest F1 over all thresholds per row: predicted positive = score >= each distinct score."""
    order = np.argsort(-ss, axis=1, kind="stable")
    sorted_scores = np.take_along_axis(ss, order, axis=1)
    tp = np.cumsum(np.take_along_axis(ys, order, axis=1), axis=1)
    predicted = np.arange(1, ys.shape[1] + 1)
    f1 = 2 * tp / (predicted + ys.sum(1, keepdims=True))
    last_of_tie = np.ones_like(sorted_scores, dtype=bool)  # a threshold takes every item tied with it
    last_of_tie[:, :-1] = sorted_scores[:, :-1] != sorted_scores[:, 1:]
    return np.where(last_of_tie, f1, 0.0).max(1)


def classification_intervals(labels: Sequence[int], scores: Sequence[float], threshold: float = 0.5, *,
                             metrics: Sequence[str] = CLASSIFICATION_METRICS, resamples: int = 1000,
                             confidence: float = 0.95, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Bootstrap intervals of auc, f1, mcc, precision, recall and max_f1 of one model's validation scores.

    All metrics share the resamples; 400 commits and 1000 resamples take about a tenth of a second.

        >>> ci = classification_intervals([0, 0, 1, 1, 0, 1], [.2, .6, .7, .9, .1, .4], resamples=200)
        >>> sorted(ci)
        ['auc', 'f1', 'max_f1', 'mcc', 'precision', 'recall']
    """
    statistic = classification_statistic(labels, scores, threshold, metrics)
    return intervals(statistic, len(scores), list(metrics), resamples=resamples, confidence=confidence, seed=seed)


# --- message generation ---------------------------------------------------------------------------------

def text_statistic(references: Sequence[str], predictions: Sequence[str],
                   metrics: Sequence[str] = TEXT_METRICS) -> VectorStatistic:
    """A vectorized statistic of the generation metrics (0-100, as `generation_metrics`) per resample.

    Each message is scored once (sentence BLEU, ROUGE-L, exact match, and its n-gram counts); a resample
    then only averages scores or sums counts, so corpus BLEU costs no more than the means.
    """
    unknown = sorted(set(metrics) - set(TEXT_METRICS))
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(TEXT_METRICS)}")
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} references but {len(predictions)} predictions")
    pairs = list(zip(references, predictions))
    per_item = {
        "bleu": np.array([sentence_bleu(r, p) for r, p in pairs]),
        "rouge_l": np.array([rouge_l(r, p) for r, p in pairs]),
        "exact_match": 100.0 * np.array([exact_match(r, p) for r, p in pairs]),
    }
    counts = [ngram_counts(tokenize(r), tokenize(p)) for r, p in pairs] if "corpus_bleu" in metrics else []
    matches = np.array([c.matches for c in counts], dtype=np.float64).reshape(-1, MAX_ORDER)
    totals = np.array([c.totals for c in counts], dtype=np.float64).reshape(-1, MAX_ORDER)
    lengths = np.array([(c.prediction_length, c.reference_length) for c in counts], dtype=np.float64).reshape(-1, 2)

    def corpus(rows: np.ndarray) -> np.ndarray:
        m, t = matches[rows].sum(1), totals[rows].sum(1)  # (r, 4)
        c, r = lengths[rows, 0].sum(1), lengths[rows, 1].sum(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_precision = np.log(m / t).mean(1)
            log_brevity = np.minimum(0.0, 1 - r / c)
            return np.where(m.min(1) > 0, 100 * np.exp(log_precision + log_brevity), 0.0)

    def statistic(rows: np.ndarray) -> np.ndarray:
        rows = np.atleast_2d(rows)
        return np.stack([corpus(rows) if name == "corpus_bleu" else per_item[name][rows].mean(1) for name in metrics])

    return statistic


def text_intervals(references: Sequence[str], predictions: Sequence[str], *, metrics: Sequence[str] = TEXT_METRICS,
                   resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Bootstrap intervals of bleu (mean sentence B-Norm BLEU), corpus_bleu, rouge_l and exact_match (0-100).

        >>> ci = text_intervals(["fix typo", "add test", "bump"], ["fix typo", "add tests", "fix"], resamples=200)
        >>> sorted(ci)
        ['bleu', 'corpus_bleu', 'exact_match', 'rouge_l']
    """
    statistic = text_statistic(references, predictions, metrics)
    return intervals(statistic, len(references), list(metrics), resamples=resamples, confidence=confidence, seed=seed)


# --- comparing two models -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Difference:
    """A - B on the same items, with its bootstrap interval."""

    value: float
    low: float
    high: float


def paired_difference(statistic_a: Statistic | VectorStatistic, statistic_b: Statistic | VectorStatistic, n: int, *,
                      resamples: int = 1000, confidence: float = 0.95, seed: int = 0, method: IntervalMethod = "BCa",
                      vectorized: bool = False) -> Difference:
    """A - B with a paired bootstrap interval: both statistics see the same resampled items.

    Two models scored on the same validation commits share the commits' difficulty; resampling the commits
    once for both cancels it, so the interval of the difference is much narrower than the two separate
    intervals suggest (and is the right one: the question is A vs B on these commits' population).

        >>> y = np.array([0, 1, 0, 1, 1, 0]); a = np.array([.2, .9, .1, .6, .7, .4]); b = a * 0.5
        >>> d = paired_difference(lambda i: a[i].mean(), lambda i: b[i].mean(), 6, seed=0)
        >>> d.low > 0
        True
    """
    stat_a = _as_vector(statistic_a, vectorized, 1)
    stat_b = _as_vector(statistic_b, vectorized, 1)

    def difference(rows: np.ndarray) -> np.ndarray:
        return stat_a(rows) - stat_b(rows)

    (low, high), = _intervals(difference, n, 1, resamples, confidence, seed, method)
    value = float(difference(np.arange(n)[None, :])[0, 0]) if n else math.nan
    return Difference(value, low, high)


def classification_difference(labels: Sequence[int], scores_a: Sequence[float], scores_b: Sequence[float],
                              metric: str = "auc", threshold: float = 0.5, *, resamples: int = 1000,
                              confidence: float = 0.95, seed: int = 0) -> Difference:
    """`metric`(A) - `metric`(B) of two models' scores of the same commits (same order), paired bootstrap.

        >>> d = classification_difference([0, 1, 0, 1], [.1, .9, .2, .8], [.9, .1, .2, .8], resamples=200)
        >>> d.value
        0.75
    """
    return paired_difference(classification_statistic(labels, scores_a, threshold, [metric]),
                             classification_statistic(labels, scores_b, threshold, [metric]), len(labels),
                             resamples=resamples, confidence=confidence, seed=seed, vectorized=True)


# --- repeats over seeds ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class RepeatComparison:
    """Two methods' metric over repeated seeds: each mean with its t interval, and Welch's test between them."""

    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    sd_a: float
    sd_b: float
    ci_a: tuple[float, float]
    ci_b: tuple[float, float]
    difference: float  # mean_a - mean_b
    standard_error: float  # of the difference (Welch)
    difference_ci: tuple[float, float]  # Welch-Satterthwaite t interval of the difference
    p_value: float  # Welch's two-sided t-test; NaN with fewer than 2 runs on a side or no variance at all
    confidence: float = 0.95


def compare_repeats(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> RepeatComparison:
    """Means and spreads of two methods' metric over seeds, and Welch's t-test of the difference.

    Why Welch and not a paired t-test: seed k of method A and seed k of method B share little (a different
    set of trained weights, initialised differently), so pairing by seed number has no basis and would
    only lose degrees of freedom; and the methods' spreads differ (full fine-tuning varies more over seeds
    than LoRA), which Welch allows and Student's test does not. (The commits *are* shared: that pairing is
    what `paired_difference` uses, on one run of each.)

    What N=3 can tell: a difference several times larger than the seeds' spread shows (p small); the
    intervals of the means are wide (t with 2 degrees of freedom: mean +- 4.3 s.e.). What it cannot tell:
    that two methods are equal. A large p is no evidence of "no difference"; with 3 seeds a test misses
    most differences of the size of the seed spread. The standard deviations themselves are rough at N=3.

        >>> r = compare_repeats([0.71, 0.73, 0.72], [0.65, 0.66, 0.64])
        >>> round(r.difference, 3), r.p_value < 0.01
        (0.07, True)
    """
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.size == 0 or y.size == 0:
        raise ValueError("compare_repeats needs at least one value on each side")
    difference = float(x.mean() - y.mean())
    sd_x, sd_y = _sd(x), _sd(y)
    standard_error = math.sqrt(sd_x ** 2 / x.size + sd_y ** 2 / y.size) if x.size > 1 and y.size > 1 else math.nan
    p_value, difference_ci = math.nan, (math.nan, math.nan)
    if x.size > 1 and y.size > 1 and standard_error > 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            test = stats.ttest_ind(x, y, equal_var=False)
        p_value = float(test.pvalue)
        difference_ci = tuple(float(v) for v in test.confidence_interval(confidence))
    return RepeatComparison(x.size, y.size, float(x.mean()), float(y.mean()), sd_x, sd_y,
                            _mean_interval(x, confidence), _mean_interval(y, confidence), difference,
                            standard_error, difference_ci, p_value, confidence)


def _sd(values: np.ndarray) -> float:
    """Sample standard deviation (n - 1); NaN for one value."""
    return float(values.std(ddof=1)) if values.size > 1 else math.nan


def _mean_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """Student t interval of the mean; (nan, nan) for one value, (mean, mean) with no spread."""
    if values.size < 2:
        return math.nan, math.nan
    mean, error = float(values.mean()), float(stats.sem(values))
    if error == 0:
        return mean, mean
    low, high = stats.t.interval(confidence, values.size - 1, loc=mean, scale=error)
    return float(low), float(high)


def resolved(difference: Difference | None, repeats: RepeatComparison | None = None) -> int:
    """+1 when A - B is resolvably above 0, -1 when below, 0 when not resolved.

    Resolved: the paired interval over the commits excludes 0 and, where both sides have repeats with a spread
    (Welch's p defined), the seeds agree: p < 0.05 with the same sign. A gap the seeds' own spread covers is a gap
    between two trainings, not between two configurations.

        >>> resolved(Difference(0.05, 0.02, 0.08)), resolved(Difference(0.01, -0.02, 0.04))
        (1, 0)
    """
    if difference is None or math.isnan(difference.low) or math.isnan(difference.high):
        return 0
    side = 1 if difference.low > 0 else -1 if difference.high < 0 else 0
    if side and repeats is not None and not math.isnan(repeats.p_value):
        if repeats.p_value >= 0.05 or (repeats.difference > 0) != (side > 0):
            return 0
    return side
