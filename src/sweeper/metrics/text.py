"""Commit-message metrics: B-Norm sentence BLEU, corpus BLEU, ROUGE-L and exact match, each on a 0-100 scale.

Every metric compares the tokens of `tokenize` (lower-cased; words, punctuation and underscores apart),
so "Fix typo." and "fix typo ." are the same message. The scale is 0-100, as CMG papers report.

    >>> m = generation_metrics(["Fix typo in README"], ["fix typo in readme"])
    >>> m["bleu"], m["rouge_l"], m["exact_match"]
    (100.0, 100.0, 100.0)
    >>> round(sentence_bleu("fix typo in readme file", "fix typo in docs file"), 2)
    53.18
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

MAX_ORDER = 4  # BLEU-4: n-grams of 1 to 4 tokens
TOKEN = re.compile(r"[^\W_]+|\S")  # a run of letters and digits, or any other single non-space character


def tokenize(text: str) -> list[str]:
    """B-Norm's normalisation: lower-case, then split into runs of letters and digits and single other characters.

    Whitespace only separates. Every other non-letter, non-digit character is a token of its own: punctuation,
    symbols and underscores, so "Fix foo_bar()." gives fix, foo, _, bar, (, ), and ".". This is what the B-Norm
    script of Tao et al. (2021) does: it splits with `[\\w]+|[^\\s\\w]`, then runs the NIST mteval
    normalisation, which also splits off underscores (and changes nothing else on already-split text).
    """
    return TOKEN.findall(text.lower())


@dataclass(frozen=True)
class NgramCounts:
    """What BLEU needs from one (reference, prediction) pair, or from a corpus of them summed."""

    matches: tuple[int, ...]  # prediction n-grams also in the reference, clipped to the reference's count; n = 1..4
    totals: tuple[int, ...]  # n-grams in the prediction; n = 1..4
    prediction_length: int
    reference_length: int


def ngram_counts(reference: list[str], prediction: list[str]) -> NgramCounts:
    """Clipped n-gram matches and n-gram totals of `prediction` against `reference` (token lists)."""
    matches = tuple(sum((ngrams(prediction, n) & ngrams(reference, n)).values()) for n in range(1, MAX_ORDER + 1))
    totals = tuple(max(len(prediction) - n + 1, 0) for n in range(1, MAX_ORDER + 1))
    return NgramCounts(matches, totals, len(prediction), len(reference))


def ngrams(tokens: list[str], n: int) -> Counter[tuple[str, ...]]:
    """How often each run of `n` tokens occurs in `tokens`."""
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def sentence_bleu(reference: str, prediction: str) -> float:
    """B-Norm BLEU-4 of one message, 0-100: smoothed sentence BLEU (Lin & Och 2004) on `tokenize`'s tokens.

    As the B-Norm script (Tao et al. 2021; the codenn and CodeXGLUE `bleu.py`) computes it, with c and r the
    prediction and reference lengths:
      - unigram precision m1/c, unsmoothed;
      - n = 2..4: (m_n + 1) / (c_n + 1), add-one smoothing; an order the prediction is too short for is (0+1)/(0+1);
      - their geometric mean, times the brevity penalty exp(min(0, 1 - (r + 1) / (c + 1))).
    So it differs from NLTK's `sentence_bleu` with `SmoothingFunction().method2` (the same add-one smoothing)
    only where c < r (NLTK's penalty is exp(1 - r / c)) or c < 4 (NLTK counts the empty order as 1/2).
    No unigram match gives 0; so does an empty prediction (the script would give exp(-r)).
    """
    counts = ngram_counts(tokenize(reference), tokenize(prediction))
    if counts.matches[0] == 0:
        return 0.0
    log_precision = math.log(counts.matches[0] / counts.totals[0])
    log_precision += sum(math.log((m + 1) / (t + 1)) for m, t in zip(counts.matches[1:], counts.totals[1:]))
    log_brevity = min(0.0, 1 - (counts.reference_length + 1) / (counts.prediction_length + 1))
    return 100 * math.exp(log_precision / MAX_ORDER + log_brevity)


def corpus_bleu(references: list[str], predictions: list[str]) -> float:
    """Corpus BLEU-4 (Papineni et al. 2002), 0-100, unsmoothed, on `tokenize`'s tokens.

    Clipped n-gram matches, n-gram totals and lengths are summed over all pairs; then the geometric mean of the
    four precisions times one brevity penalty exp(min(0, 1 - r / c)). 0 if some order has no match at all.
    This is sacrebleu's `corpus_bleu(..., tokenize="none", smooth_method="none")` on these tokens, and NLTK's where
    every prediction has 4 tokens or more (NLTK counts at least one n-gram per prediction). It takes a few lines
    on `sentence_bleu`'s n-gram counts, so neither library is needed at run time; the tests check both.
    """
    pairs = [ngram_counts(tokenize(r), tokenize(p)) for r, p in zip(references, predictions, strict=True)]
    matches = [sum(pair.matches[i] for pair in pairs) for i in range(MAX_ORDER)]
    totals = [sum(pair.totals[i] for pair in pairs) for i in range(MAX_ORDER)]
    if min(matches, default=0) == 0:
        return 0.0
    prediction_length = sum(pair.prediction_length for pair in pairs)
    reference_length = sum(pair.reference_length for pair in pairs)
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / MAX_ORDER
    log_brevity = min(0.0, 1 - reference_length / prediction_length)
    return 100 * math.exp(log_precision + log_brevity)


def rouge_l(reference: str, prediction: str) -> float:
    """ROUGE-L F1 (Lin 2004), 0-100, on `tokenize`'s tokens.

    With l the length of the longest common subsequence: precision l / c, recall l / r, and their harmonic
    mean (beta = 1, as the `rouge-score` package's F-measure). 0 when nothing is in common or either is empty.
    """
    ref, pred = tokenize(reference), tokenize(prediction)
    common = lcs_length(ref, pred)
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 100 * 2 * precision * recall / (precision + recall)


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of `a` and `b` (dynamic programming, one row at a time)."""
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def exact_match(reference: str, prediction: str) -> bool:
    """Whether the two messages have the same tokens (so case, spacing and spaces around punctuation don't count)."""
    return tokenize(reference) == tokenize(prediction)


def generation_metrics(references: list[str], predictions: list[str]) -> dict[str, float]:
    """All the metrics of a set of generated messages, 0-100.

    "bleu": mean sentence B-Norm BLEU (what CMG papers report), "corpus_bleu", "rouge_l": mean ROUGE-L F1,
    "exact_match": the percentage of exact matches. No pairs: all 0.
    """
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} references but {len(predictions)} predictions")
    if not references:
        return {"bleu": 0.0, "corpus_bleu": 0.0, "rouge_l": 0.0, "exact_match": 0.0}
    pairs = list(zip(references, predictions))
    return {
        "bleu": sum(sentence_bleu(r, p) for r, p in pairs) / len(pairs),
        "corpus_bleu": corpus_bleu(references, predictions),
        "rouge_l": sum(rouge_l(r, p) for r, p in pairs) / len(pairs),
        "exact_match": 100 * sum(exact_match(r, p) for r, p in pairs) / len(pairs),
    }
