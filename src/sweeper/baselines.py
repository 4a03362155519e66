"""JIT-DP baselines every fine-tuned trial is compared with: LApredict and a logistic regression on the 14 features.

Deep JIT-DP models often fail to beat a logistic regression on the lines a commit adds (LApredict, Zeng et al.,
ISSTA 2021); a sweep that shows trials without these figures beside them cannot say whether fine-tuning helped.

    >>> from sweeper.data.records import read_records, sample_records
    >>> from sweeper.data.split import time_split
    >>> splits = time_split(sample_records(read_records("bundled:jitdp").records, 600, 0), 0.25, 0.0)
    >>> results = fit_baselines(splits.train, {"valid": splits.valid}, resamples=200)
    >>> [(r.name, r.parameters) for r in results]
    [('lapredict', 2), ('expert_lr', 15)]
    >>> 0 <= results[0].metrics["valid"]["auc_ci_low"] <= results[0].metrics["valid"]["auc"]
    True

Both use `class_weight="balanced"` (weights n / (2 * count of the class)): the same inverse-frequency weights the
trials' loss uses (`class_weighting: true`, `tasks.defects.class_weights`), so the threshold 0.5 at which F1,
MCC, precision and recall are read means the same for baselines and trials. Unweighted, a logistic regression
on ~9 % positives rarely scores a commit above 0.5, and its F1 at 0.5 is near 0 whatever its ranking. AUC does not
depend on the threshold; for LApredict (one feature) weighting cannot change the ranking at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.linear_model import LogisticRegression

from sweeper.config import TrialConfig
from sweeper.data.features import FEATURE_NAMES, FeatureScaler, count_added_lines, feature_matrix, has_features
from sweeper.data.records import CommitRecord, Dataset
from sweeper.data.split import Splits, rolling_windows, trial_splits
from sweeper.errors import DataError
from sweeper.metrics.bootstrap import classification_intervals, flat_intervals
from sweeper.metrics.classification import classification_metrics

VALID = "valid"  # the split whose metrics get bootstrap intervals and whose scores are kept
BASELINES = ("lapredict", "expert_lr")


@dataclass(frozen=True)
class BaselineResult:
    """One baseline fitted on the training split and scored on each other split.

    `metrics[split]` holds `classification_metrics`' figures (auc, f1, mcc, precision, recall, max_f1, ...); the
    validation split also has `<metric>_ci_low` / `<metric>_ci_high`. `valid_ids` and `valid_scores` are the
    validation commits' scores, in split order, for paired comparisons with trials (`classification_difference`).
    A baseline that cannot run on this data has `skipped` set to the reason, and nothing else. Scores on rolling
    windows (`rolling_baselines`), `windows` holds each window's own validation metrics, in order.
    """

    name: str
    description: str
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    valid_ids: list[str] = field(default_factory=list)
    valid_scores: list[float] = field(default_factory=list)
    fit_seconds: float = 0.0
    parameters: int = 0
    skipped: str = ""
    windows: list[dict[str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class Inputs:
    """A baseline's input matrix for each split (training under "train"), and what they are."""

    matrices: dict[str, np.ndarray]
    description: str


def baselines_for(config: TrialConfig, names: Sequence[str] = BASELINES, dataset: Dataset | None = None, *,
                  resamples: int = 1000) -> list[BaselineResult]:
    """The named baselines fitted on the training split of `config`'s trial, scored on its validation (and test) split.

    The split comes from `trial_splits`, where `run_trial` takes its split from: the same data, sample, split and
    seed, so the baselines' validation commits are the trial's, in the same order (its `predictions.csv` order:
    paired comparisons can go by position). `dataset` saves reading the file again when the caller has read it.
    Intervals use the trials' bootstrap (`resamples`, seed 0). Usage::

        lapredict, expert_lr = baselines_for(spec.trial({}), spec.baseline_names())
        lapredict.metrics["valid"]["auc"], lapredict.metrics["valid"]["auc_ci_low"]
    """
    if not names:
        return []
    _, splits = trial_splits(config, dataset)
    if config.data.split.folds > 1:
        return rolling_baselines(splits, config.data.split.folds, names, resamples=resamples)
    scored = {VALID: splits.valid, **({"test": splits.test} if splits.test else {})}
    return fit_baselines(splits.train, scored, names, resamples=resamples)


def rolling_baselines(splits: Splits, folds: int, names: Sequence[str] = BASELINES, *,
                      resamples: int = 1000, seed: int = 0) -> list[BaselineResult]:
    """The baselines evaluated as a rolling trial is (`sweeper.rolling`): fitted afresh on each window's training
    commits (`rolling_windows`), scored on the window; metrics and intervals from the windows' scores pooled, in the
    validation split's order; the test split scored by the last window's fit. A baseline skipped in any window
    (one class in the first window's training commits, say) is skipped, with the window named."""
    history = [*splits.train, *splits.valid]
    windows = rolling_windows(splits, folds)
    fitted, valid_parts = [], []
    for number, window in enumerate(windows, start=1):
        scored = {VALID: [history[i] for i in window.valid]}
        valid_parts.append(scored[VALID])
        if number == len(windows) and splits.test:
            scored["test"] = splits.test
        fitted.append(fit_baselines([history[i] for i in window.train], scored, names, resamples=0, seed=seed))
    results = []
    for position, name in enumerate(names):
        runs = [window[position] for window in fitted]
        skipped = next((f"window {number}: {run.skipped}" for number, run in enumerate(runs, 1) if run.skipped), "")
        if skipped:
            results.append(BaselineResult(name, runs[0].description, skipped=skipped))
            continue
        labels = _labels(splits.valid)
        scores = np.array([score for run in runs for score in run.valid_scores])
        valid = classification_metrics(labels.tolist(), scores.tolist()) | flat_intervals(
            classification_intervals(labels, scores, resamples=resamples, seed=seed))
        metrics = {VALID: valid, **{split: values for split, values in runs[-1].metrics.items() if split != VALID}}
        results.append(BaselineResult(name, runs[-1].description, metrics, [r.id for r in splits.valid],
                                      scores.tolist(), sum(run.fit_seconds for run in runs), runs[-1].parameters,
                                      windows=[window_figures(run.metrics[VALID], _labels(run_valid))
                                               for run, run_valid in zip(runs, valid_parts)]))
    return results


def window_figures(metrics: dict[str, float], labels: np.ndarray) -> dict[str, float]:
    """A window's own figures under their names (`commits`, `defective`, and the metrics): none of the metrics when
    its commits are of one class, where AUC, F1 and MCC are undefined (the pooled figures still count them)."""
    counts = {"commits": float(len(labels)), "defective": float(labels.sum())}
    return counts | ({} if len(set(labels.tolist())) < 2 else metrics)


def fit_baselines(train: Sequence[CommitRecord], splits: dict[str, Sequence[CommitRecord]],
                  names: Sequence[str] = BASELINES, *, resamples: int = 1000, seed: int = 0) -> list[BaselineResult]:
    """Fit each named baseline on `train` and score every split (e.g. {"valid": ..., "test": ...}).

    Every split gets bootstrap intervals (`resamples`, `seed`; none when 0; the test split's for the report's
    held-out section); the validation split (key "valid") keeps its scores.
    Baselines whose inputs are missing (expert_lr without features) or whose training split has one class
    come back with `skipped` set; a record without a label is an error (`DataError`).
    """
    unknown = [name for name in names if name not in BUILDERS]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; choose from {list(BUILDERS)}")
    labels = {split: _labels(records) for split, records in {"train": train, **splits}.items()}
    results = []
    for name in names:
        inputs = BUILDERS[name](train, splits)
        if isinstance(inputs, str):
            results.append(BaselineResult(name, DESCRIPTIONS[name], skipped=inputs))
        elif len(set(labels["train"].tolist())) < 2:
            results.append(BaselineResult(name, inputs.description, skipped="the training split has one class only"))
        else:
            results.append(_fit(name, inputs, labels, splits, resamples, seed))
    return results


def _fit(name: str, inputs: Inputs, labels: dict[str, np.ndarray], splits: dict[str, Sequence[CommitRecord]],
         resamples: int, seed: int) -> BaselineResult:
    """Fit a balanced logistic regression on the training matrix; metrics (and intervals) per split."""
    start = time.perf_counter()
    model = LogisticRegression(class_weight="balanced", max_iter=1000, random_state=0)
    model.fit(inputs.matrices["train"], labels["train"])
    seconds = time.perf_counter() - start
    metrics: dict[str, dict[str, float]] = {}
    valid_scores: list[float] = []
    for split in splits:
        scores = model.predict_proba(inputs.matrices[split])[:, 1]
        metrics[split] = classification_metrics(labels[split].tolist(), scores.tolist())
        if resamples:
            metrics[split] |= flat_intervals(classification_intervals(labels[split], scores, resamples=resamples,
                                                                      seed=seed))
        if split == VALID:
            valid_scores = scores.tolist()
    return BaselineResult(name, inputs.description, metrics, [r.id for r in splits.get(VALID, [])], valid_scores,
                          seconds, int(model.coef_.size + model.intercept_.size))


def _labels(records: Sequence[CommitRecord]) -> np.ndarray:
    for record in records:
        if record.label is None:
            raise DataError(record.source or f"record {record.id}", record.line or None, "label",
                            "missing: the baselines need labelled commits")
    return np.array([record.label for record in records], dtype=int)


def lapredict_inputs(train: Sequence[CommitRecord], splits: dict[str, Sequence[CommitRecord]]) -> Inputs:
    """log(1 + la) per commit: `la` from the records' features when every record has it, else the diff's
    added lines counted for every record (one source for all, so train and validation are alike)."""
    everything = [*train, *(r for records in splits.values() for r in records)]
    if has_features(everything, ["la"]):
        count: Callable[[CommitRecord], float] = lambda record: record.features["la"]
        source = "la from the records' features"
    else:
        count = lambda record: float(count_added_lines(record.diff))
        source = "la counted from the diff's added lines (some records lack features)"
    matrices = {split: np.log1p(np.array([[count(r)] for r in records], dtype=np.float64).reshape(-1, 1))
                for split, records in {"train": train, **splits}.items()}
    return Inputs(matrices, f"{DESCRIPTIONS['lapredict']}; {source}")


def expert_lr_inputs(train: Sequence[CommitRecord], splits: dict[str, Sequence[CommitRecord]]) -> Inputs | str:
    """The 14 features, signed-log transformed and standardised with a `FeatureScaler` fitted on `train` only;
    the reason to skip when a record lacks them."""
    try:
        raw = {split: feature_matrix(records) for split, records in {"train": train, **splits}.items()}
    except DataError as error:
        return f"needs the 14 expert features on every record: {error}"
    scaler = FeatureScaler().fit(raw["train"])
    return Inputs({split: scaler.transform(matrix) for split, matrix in raw.items()}, DESCRIPTIONS["expert_lr"])


DESCRIPTIONS = {
    "lapredict": "LApredict (Zeng et al. 2021): logistic regression on log(1 + lines added), class_weight=balanced",
    "expert_lr": (f"logistic regression on the 14 expert features ({', '.join(FEATURE_NAMES)}), signed log and "
                  "standardised on the training split, class_weight=balanced"),
}
BUILDERS: dict[str, Callable[..., Inputs | str]] = {"lapredict": lapredict_inputs, "expert_lr": expert_lr_inputs}
