"""Defect-prediction metrics: F1, AUC-ROC, MCC, precision and recall at a threshold.

    >>> m = classification_metrics([0, 1, 1, 0], [0.1, 0.8, 0.4, 0.3])
    >>> m["auc"], m["recall"], m["max_f1"]
    (1.0, 0.5, 1.0)
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score, matthews_corrcoef, precision_recall_curve, precision_score, recall_score, roc_auc_score


def classification_metrics(labels: list[int], scores: list[float], threshold: float = 0.5) -> dict[str, float]:
    """F1, precision, recall, MCC at `threshold`, AUC-ROC, and the highest F1 over thresholds with its threshold."""
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    predicted = (s >= threshold).astype(int)
    max_f1, max_f1_threshold = highest_f1(y, s)
    return {
        "f1": float(f1_score(y, predicted, zero_division=0)),
        "precision": float(precision_score(y, predicted, zero_division=0)),
        "recall": float(recall_score(y, predicted, zero_division=0)),
        "mcc": float(matthews_corrcoef(y, predicted)) if len(set(y)) > 1 else 0.0,
        "auc": float(roc_auc_score(y, s)) if len(set(y)) > 1 else 0.5,
        "max_f1": max_f1,
        "max_f1_threshold": max_f1_threshold,
    }


def highest_f1(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """The highest F1 over all score thresholds, and the threshold that gives it."""
    if labels.sum() == 0:
        return 0.0, 0.5
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)[:-1]
    best = int(np.argmax(f1))
    return float(f1[best]), float(thresholds[best])
