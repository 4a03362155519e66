"""How the report words what the statistics found: the metrics' display names and the sentence on a comparison of
two configurations (`sweeper.metrics.bootstrap` computes the differences and decides whether they are resolved)."""

from __future__ import annotations

import math

from sweeper.direction import Direction
from sweeper.metrics.bootstrap import Difference, RepeatComparison, resolved

DISPLAY = {"auc": "AUC", "f1": "F1", "mcc": "MCC", "max_f1": "max F1", "bleu": "BLEU", "corpus_bleu": "corpus BLEU",
           "rouge_l": "ROUGE-L", "exact_match": "exact match", "eval_loss": "eval loss"}


def decision(name_a: str, name_b: str, metric: str, difference: Difference, repeats: RepeatComparison | None = None,
             direction: Direction = Direction.MAX) -> str:
    """One sentence on A vs B: the paired difference, its interval and what it means; the repeats if given.

    "A is better" only when the interval excludes 0; otherwise "no clear difference" (not "equal": an
    interval across 0 fails to show a difference, it does not show there is none).

        >>> decision("lora", "full", "auc", Difference(-0.012, -0.041, 0.015))
        'lora vs full: AUC -0.012 [-0.041, +0.015]: no clear difference'
        >>> decision("lora", "full", "auc", Difference(-0.06, -0.09, -0.03))
        'lora vs full: AUC -0.060 [-0.090, -0.030]: full is better'
    """
    label = DISPLAY.get(metric, metric)
    head = f"{name_a} vs {name_b}: {label} {difference.value:+.3f} [{difference.low:+.3f}, {difference.high:+.3f}]: "
    side = resolved(difference, repeats)
    if math.isnan(difference.low) or math.isnan(difference.high):
        verdict = "interval undefined"
    elif side:
        a_wins = (side > 0) == (direction is Direction.MAX)
        verdict = f"{name_a if a_wins else name_b} is better"
    elif difference.low > 0 or difference.high < 0:
        verdict = "no clear difference over seeds (the interval excludes 0 on these commits only)"
    else:
        verdict = "no clear difference"
    sentence = head + verdict
    if repeats is not None:
        seeds = f"{repeats.n_a}" if repeats.n_a == repeats.n_b else f"{repeats.n_a} and {repeats.n_b}"
        p = repeats.p_value
        p = "n/a" if math.isnan(p) else f"{p:.2f}" if p >= 0.01 else f"{p:.0e}"
        sentence += (f"; over {seeds} seeds {repeats.difference:+.3f} ± {repeats.standard_error:.3f} (s.e.), "
                     f"Welch p = {p}")
    return sentence
