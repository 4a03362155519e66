"""The smallest difference a validation split can resolve: known before the first trial, repeated by the verdict.

A paired comparison of two models on the same validation commits resolves a difference when its 95 % interval
excludes 0, so differences below about 1.96 standard errors of the difference cannot be resolved. That standard
error depends on the number of commits, for AUC mostly on the number of defective ones, and on how alike the two
models' errors are (their correlation r over resamples of the commits):

    SE(A1 - A2) = SE(A) * sqrt(2 * (1 - r))

AUC: SE(A) is Hanley & McNeil's (1982) from the numbers of defective and clean commits at a reference AUC. It needs
no scores, so it is known before anything trains, and it is mildly conservative: it assumes exponential score
distributions, which give a larger variance than binormal ones (about 10 % at 22 defective commits, AUC 0.75). The
reference AUC is 0.75, the middle of what JIT-DP models reach; SE(A) changes little over 0.7-0.85. r is 0.5, the
middle of the correlations Hanley & McNeil (1983) report between two AUCs measured on the same cases; with it the
figure is 1.96 SE(A), one model's own interval half-width. Two models driven by the same signal (both on expert
features) correlate more and resolve smaller differences; unrelated ones resolve less (r = 0: sqrt(2) times more).

BLEU (message generation): the mean of per-commit sentence scores, so SE(A) = sd / sqrt(n) with sd the spread of
the per-commit scores: measured on a run's predictions where there is one, else 25 BLEU points (a typical spread of
sentence B-Norm BLEU over commits) before the first trial; r is 0.5 as for AUC.

    >>> round(auc_standard_error(0.75, 22, 378), 4)
    0.0613
    >>> split_resolution("jitdp", [1] * 22 + [0] * 378).sentence
    '400 validation commits, 22 defective: differences below about 0.12 AUC cannot be resolved'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Z95 = 1.959964  # the two-sided 95 % normal quantile
REFERENCE_AUC = 0.75
CORRELATION = 0.5  # of two models' metrics over resamples of the same commits
BLEU_SPREAD = 25.0  # sd of per-commit sentence BLEU (0-100) assumed before any model has generated


@dataclass(frozen=True)
class Resolution:
    """The smallest resolvable difference of `metric` and the validation split it is for."""

    value: float
    metric: str  # auc or bleu
    commits: int
    positives: int | None  # defective validation commits (JIT-DP)

    @property
    def sentence(self) -> str:
        defective = f", {self.positives} defective" if self.positives is not None else ""
        shown = f"{self.value:.2f} AUC" if self.metric == "auc" else f"{self.value:.1f} BLEU"
        return f"{self.commits} validation commits{defective}: differences below about {shown} cannot be resolved"


def auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Hanley & McNeil (1982), eq. 2: the standard error of an AUC from the class sizes."""
    if positives < 1 or negatives < 1:
        return math.nan
    q1, q2 = auc / (2 - auc), 2 * auc ** 2 / (1 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc ** 2) + (negatives - 1) * (q2 - auc ** 2))
    return math.sqrt(variance / (positives * negatives))


def resolvable_auc(positives: int, negatives: int, auc: float = REFERENCE_AUC,
                   correlation: float = CORRELATION) -> float:
    """The smallest AUC difference a paired 95 % interval resolves at these class sizes (see the module)."""
    return Z95 * auc_standard_error(auc, positives, negatives) * math.sqrt(2 * (1 - correlation))


def resolvable_mean(spread: float, n: int, correlation: float = CORRELATION) -> float:
    """The smallest difference of two means of per-item scores (spread `spread` each) a paired interval resolves."""
    return Z95 * spread / math.sqrt(n) * math.sqrt(2 * (1 - correlation)) if n > 0 else math.nan


def split_resolution(task: str, labels: Sequence[int | None], scores: Sequence[float] | None = None) -> Resolution:
    """The resolution of a validation split: `labels` of its commits (JIT-DP; anything for message generation, only
    counted) and, for message generation, the per-commit sentence BLEU of a model's predictions where known."""
    if task == "jitdp":
        positives = sum(1 for label in labels if label == 1)
        return Resolution(resolvable_auc(positives, len(labels) - positives), "auc", len(labels), positives)
    spread = float(np.std(scores, ddof=1)) if scores is not None and len(scores) > 1 else BLEU_SPREAD
    return Resolution(resolvable_mean(spread, len(labels)), "bleu", len(labels), None)
