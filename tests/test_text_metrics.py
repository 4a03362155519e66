"""Commit-message metrics: hand-worked cases, and agreement with NLTK, sacrebleu and rouge-score on real
commit messages."""

from __future__ import annotations

import gzip
import json
import math
import random
from pathlib import Path

import pytest
import sacrebleu
from nltk.translate import bleu_score as nltk_bleu
from rouge_score.rouge_scorer import RougeScorer

import sweeper
from sweeper.metrics.text import (corpus_bleu, exact_match, generation_metrics, rouge_l, sentence_bleu,
                                  tokenize)

SHARED_COMMITS = Path(__file__).resolve().parents[2] / "shared" / "data" / "cmg" / "python-commits.jsonl.gz"
BUNDLED_COMMITS = Path(sweeper.__file__).parent / "data" / "bundled" / "cmg-sample.jsonl.gz"  # 2000 of the same rows


# --- tokenize -------------------------------------------------------------------------------------------------

def test_tokenize_lower_cases_and_splits_punctuation_and_underscores() -> None:
    assert tokenize("Fix SOURCE/SRC envvar mixup") == ["fix", "source", "/", "src", "envvar", "mixup"]
    assert tokenize("Merge pull request #12 from foo/bar_baz.") == [
        "merge", "pull", "request", "#", "12", "from", "foo", "/", "bar", "_", "baz", "."]
    assert tokenize("Bump to v1.2.3\n\nDon't  panic") == ["bump", "to", "v1", ".", "2", ".", "3", "don", "'", "t",
                                                        "panic"]
    assert tokenize("") == [] and tokenize(" \n\t ") == []


# --- sentence BLEU (B-Norm), by hand ---------------------------------------------------------------------------

def test_identical_messages_score_100() -> None:
    # 5 tokens: p1 = 5/5; smoothed p2 = (4+1)/(4+1), p3 = (3+1)/(3+1), p4 = (2+1)/(2+1); c = r: no penalty.
    assert sentence_bleu("Fix the bug in parser", "fix the bug in parser") == pytest.approx(100, abs=1e-9)
    # 2 tokens: p1 = 2/2, p2 = (1+1)/(1+1); no 3- or 4-grams: (0+1)/(0+1) = 1, as B-Norm counts them.
    assert sentence_bleu("Update README", "update readme") == pytest.approx(100, abs=1e-9)


def test_no_common_word_scores_0() -> None:
    assert sentence_bleu("add tests for the parser", "remove old docs") == 0.0


def test_shorter_prediction_takes_the_brevity_penalty() -> None:
    # r = 7 ("fix the crash in the config parser"), c = 4. Every n-gram of the prediction is in the reference:
    # p1 = 4/4, p2 = (3+1)/(3+1), p3 = (2+1)/(2+1), p4 = (1+1)/(1+1) -> precisions give 1.
    # B-Norm's penalty: exp(1 - (r+1)/(c+1)) = exp(1 - 8/5) = exp(-0.6) (NLTK's would be exp(1 - 7/4)).
    score = sentence_bleu("fix the crash in the config parser", "fix the crash in")
    assert score == pytest.approx(100 * math.exp(-0.6), abs=1e-9)


def test_smoothing_keeps_a_score_without_any_4gram_match() -> None:
    # reference "fix typo in readme file", prediction "fix typo in docs file" (c = r = 5, no penalty):
    # unigrams fix, typo, in, file match: p1 = 4/5
    # bigrams "fix typo", "typo in" of 4 match: p2 = (2+1)/(4+1) = 3/5
    # trigrams "fix typo in" of 3 matches:     p3 = (1+1)/(3+1) = 1/2
    # no 4-gram of 2 matches:                   p4 = (0+1)/(2+1) = 1/3  (unsmoothed BLEU would be 0)
    # (4/5 * 3/5 * 1/2 * 1/3) ** (1/4) = (2/25) ** (1/4)
    score = sentence_bleu("fix typo in readme file", "fix typo in docs file")
    assert score == pytest.approx(100 * (2 / 25) ** 0.25, abs=1e-9)


def test_repeated_words_are_clipped_to_the_reference_count() -> None:
    # reference "add the test", prediction "the the the the" (c = 4 > r = 3: no penalty)
    # p1: four "the", the reference has one: 1/4; p2: three "the the", none: (0+1)/(3+1) = 1/4
    # p3: (0+1)/(2+1) = 1/3; p4: (0+1)/(1+1) = 1/2 -> (1/4 * 1/4 * 1/3 * 1/2) ** (1/4) = (1/96) ** (1/4)
    assert sentence_bleu("add the test", "the the the the") == pytest.approx(100 * (1 / 96) ** 0.25, abs=1e-9)


@pytest.mark.parametrize("empty", ["", "   ", "\n"])
def test_empty_prediction_scores_0_everywhere(empty: str) -> None:
    assert sentence_bleu("fix the parser", empty) == 0.0
    assert rouge_l("fix the parser", empty) == 0.0
    assert not exact_match("fix the parser", empty)
    assert corpus_bleu(["fix the parser"], [empty]) == 0.0


# --- corpus BLEU, ROUGE-L, exact match, by hand ---------------------------------------------------------------

def test_corpus_bleu_sums_counts_over_pairs() -> None:
    # pair 1: "fix typo in readme file" / "fix typo in docs file": matches 4, 2, 1, 0 of 5, 4, 3, 2 n-grams
    # pair 2: "fix the crash in the config parser" / "fix the crash in": matches 4, 3, 2, 1 of 4, 3, 2, 1
    # summed: p1 = 8/9, p2 = 5/7, p3 = 3/5, p4 = 1/3; c = 9, r = 12 -> penalty exp(1 - 12/9) = exp(-1/3)
    references = ["fix typo in readme file", "fix the crash in the config parser"]
    predictions = ["fix typo in docs file", "fix the crash in"]
    expected = 100 * math.exp(-1 / 3) * (8 / 9 * 5 / 7 * 3 / 5 * 1 / 3) ** 0.25
    assert corpus_bleu(references, predictions) == pytest.approx(expected, abs=1e-9)
    # unsmoothed: pair 1 alone has no 4-gram match, so its corpus BLEU is 0
    assert corpus_bleu(references[:1], predictions[:1]) == 0.0
    # a prediction shorter than n adds no n-gram: identical messages score 100, however short
    # ("fix typo in readme file" and "update readme": 7/7, 5/5, 3/3, 2/2; NLTK would count 3/4 and 2/3)
    same = ["fix typo in readme file", "update readme"]
    assert corpus_bleu(same, same) == pytest.approx(100, abs=1e-9)
    assert corpus_bleu([], []) == 0.0


def test_rouge_l_by_hand() -> None:
    # "fix the bug in the parser" (r = 6) / "fix a bug in parser" (c = 5): LCS fix, bug, in, parser = 4
    # P = 4/5, R = 4/6, F1 = 2PR / (P + R) = (16/15) / (22/15) = 8/11
    assert rouge_l("fix the bug in the parser", "fix a bug in parser") == pytest.approx(100 * 8 / 11, abs=1e-9)
    # order matters: LCS of "add tests for parser" and "tests add parser for" is 2 (e.g. "add parser"): P = R = 1/2
    assert rouge_l("add tests for parser", "tests add parser for") == pytest.approx(50, abs=1e-9)
    assert rouge_l("Fix typo.", "fix typo .") == pytest.approx(100, abs=1e-9)


def test_exact_match_ignores_case_and_spacing_only() -> None:
    assert exact_match("Fix typo.", "fix  typo .")
    assert not exact_match("Fix typo.", "fix typo")


def test_generation_metrics_by_hand() -> None:
    references = ["Fix typo in README", "fix the crash in the config parser"]
    predictions = ["fix typo in readme", "fix the crash in"]
    m = generation_metrics(references, predictions)
    # bleu: pair 1 is 100, pair 2 is 100 exp(-0.6) (see the brevity test)
    assert m["bleu"] == pytest.approx((100 + 100 * math.exp(-0.6)) / 2, abs=1e-9)
    # corpus: every n-gram matches (8/8, 6/6, 4/4, 2/2); c = 8, r = 11 -> 100 exp(1 - 11/8)
    assert m["corpus_bleu"] == pytest.approx(100 * math.exp(-3 / 8), abs=1e-9)
    # rouge_l: pair 1 is 100; pair 2: LCS 4, P = 1, R = 4/7 -> F1 = (8/7) / (11/7) = 8/11
    assert m["rouge_l"] == pytest.approx((100 + 100 * 8 / 11) / 2, abs=1e-9)
    assert m["exact_match"] == 50.0


def test_generation_metrics_edge_cases() -> None:
    assert generation_metrics([], []) == {"bleu": 0.0, "corpus_bleu": 0.0, "rouge_l": 0.0, "exact_match": 0.0}
    m = generation_metrics(["fix typo", "add tests"], ["", "add tests"])
    assert m["bleu"] == pytest.approx(50, abs=1e-9) and m["exact_match"] == 50.0
    with pytest.raises(ValueError):
        generation_metrics(["fix typo"], [])


# --- agreement with NLTK and rouge-score on real messages -------------------------------------------------------

@pytest.fixture(scope="module")
def pairs() -> list[tuple[str, str]]:
    """(reference, prediction) pairs from real commit messages, spread from no overlap to identical.

    Each reference is a commit's first line; its prediction is another commit's first line, or the reference
    with some words dropped, two words swapped, or words from another message inserted.
    """
    path = SHARED_COMMITS if SHARED_COMMITS.exists() else BUNDLED_COMMITS
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        firsts = [line for row in handle if (line := json.loads(row)["message"].strip().split("\n")[0].strip())]
    rng = random.Random(0)
    result = []
    for i, reference in enumerate(rng.sample(firsts, 600)):
        words, other = reference.split(), rng.choice(firsts).split()
        if i % 4 == 0:
            prediction = other
        elif i % 4 == 1:
            prediction = [w for w in words if rng.random() < 0.7]
        elif i % 4 == 2:
            j = rng.randrange(len(words))
            prediction = words[:j] + words[j + 1:j + 2] + words[j:j + 1] + words[j + 2:]
        else:
            j = rng.randrange(len(words) + 1)
            prediction = words[:j] + other[:rng.randint(1, 3)] + words[j:]
        result.append((reference, " ".join(prediction)))
    return result


def nltk_method2(reference: str, prediction: str) -> float:
    """NLTK's sentence BLEU-4 with smoothing method 2 (Lin & Och 2004: add 1 to the counts of orders n > 1), 0-100."""
    return 100 * nltk_bleu.sentence_bleu([tokenize(reference)], tokenize(prediction),
                                         smoothing_function=nltk_bleu.SmoothingFunction().method2)


def test_sentence_bleu_is_nltk_method2_where_their_definitions_coincide(pairs: list[tuple[str, str]]) -> None:
    # With c >= r (no brevity penalty in either) and c >= 4 (every order has n-grams), B-Norm is NLTK's method 2.
    same = [(r, p) for r, p in pairs if len(tokenize(p)) >= max(4, len(tokenize(r)))]
    assert len(same) >= 200
    scores = [sentence_bleu(r, p) for r, p in same]
    for (reference, prediction), score in zip(same, scores):
        assert score == pytest.approx(nltk_method2(reference, prediction), abs=1e-6), (reference, prediction)
    assert min(scores) < 20 and max(scores) > 80 and sum(0 < s < 100 for s in scores) > len(same) / 2


def test_sentence_bleu_is_nltk_method2_with_b_norms_two_differences(pairs: list[tuple[str, str]]) -> None:
    # Everywhere else B-Norm differs from NLTK's method 2 in two documented ways, undone here:
    # - brevity penalty exp(min(0, 1 - (r+1)/(c+1))) where NLTK has exp(min(0, 1 - r/c));
    # - an order n > c with no n-grams counts (0+1)/(0+1) = 1 where NLTK counts (0+1)/(1+1) = 1/2.
    scores = []
    for reference, prediction in pairs:
        r, c = len(tokenize(reference)), len(tokenize(prediction))
        expected = nltk_method2(reference, prediction)
        if expected > 0:
            empty_orders = sum(1 for n in range(2, 5) if n > c)
            expected *= math.exp(min(0, 1 - (r + 1) / (c + 1)) - min(0, 1 - r / c)) * 2 ** (empty_orders / 4)
        scores.append(sentence_bleu(reference, prediction))
        assert scores[-1] == pytest.approx(expected, abs=1e-6), (reference, prediction)
    assert sum(s < 20 for s in scores) > 50 and sum(s > 60 for s in scores) > 50


def test_corpus_bleu_is_sacrebleus_and_nltks(pairs: list[tuple[str, str]]) -> None:
    # the whole set, then slices of 25 pairs (some shorter than their references, some longer)
    for start, stop in [(0, len(pairs))] + [(i, i + 25) for i in range(0, len(pairs), 25)]:
        references, predictions = (list(side) for side in zip(*pairs[start:stop]))
        expected = sacrebleu.corpus_bleu([" ".join(tokenize(p)) for p in predictions],
                                         [[" ".join(tokenize(r)) for r in references]],
                                         tokenize="none", smooth_method="none").score
        assert corpus_bleu(references, predictions) == pytest.approx(expected, abs=1e-6)
        # NLTK counts max(1, n-grams) per prediction, too many for one shorter than n tokens: leave those out
        kept = [(r, p) for r, p in zip(references, predictions) if len(tokenize(p)) >= 4]
        expected = 100 * nltk_bleu.corpus_bleu([[tokenize(r)] for r, _ in kept], [tokenize(p) for _, p in kept])
        assert corpus_bleu(*(list(side) for side in zip(*kept))) == pytest.approx(expected, abs=1e-6)


class BNormTokens:
    """The tokenizer interface rouge-score expects, so that it scores our tokens."""

    def tokenize(self, text: str) -> list[str]:
        return tokenize(text)


def test_rouge_l_is_rouge_scores(pairs: list[tuple[str, str]]) -> None:
    scorer = RougeScorer(["rougeL"], tokenizer=BNormTokens())
    for reference, prediction in pairs:
        expected = 100 * scorer.score(reference, prediction)["rougeL"].fmeasure
        assert rouge_l(reference, prediction) == pytest.approx(expected, abs=1e-6), (reference, prediction)
