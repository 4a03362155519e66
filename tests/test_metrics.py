"""Metrics against hand-worked cases."""

from __future__ import annotations

import math

from sweeper.metrics.classification import classification_metrics


def test_hand_worked_confusion_matrix() -> None:
    # threshold 0.5: predictions 1,1,0,0,1,0 vs labels 1,0,1,0,1,0 -> TP 2, FP 1, FN 1, TN 2
    labels = [1, 0, 1, 0, 1, 0]
    scores = [0.9, 0.6, 0.4, 0.1, 0.7, 0.3]
    m = classification_metrics(labels, scores)
    assert math.isclose(m["precision"], 2 / 3) and math.isclose(m["recall"], 2 / 3)
    assert math.isclose(m["f1"], 2 / 3)
    assert math.isclose(m["mcc"], (2 * 2 - 1 * 1) / math.sqrt(3 * 3 * 3 * 3))
    # AUC: of the 9 positive/negative pairs, only (0.4 vs 0.6) is ranked wrongly
    assert math.isclose(m["auc"], 8 / 9)
    # lowering the threshold to 0.4 catches every positive: TP 3, FP 1 -> F1 = 6/7
    assert math.isclose(m["max_f1"], 6 / 7) and m["max_f1_threshold"] == 0.4


def test_one_class_only_is_defined() -> None:
    m = classification_metrics([0, 0, 0], [0.2, 0.7, 0.1])
    assert m["auc"] == 0.5 and m["mcc"] == 0.0 and m["f1"] == 0.0
