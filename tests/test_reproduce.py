"""How `sweeper reproduce` judges a re-run: identical on the machine kind the trial ran on, equal within the
tolerance elsewhere (or where the run recorded no machine), and a difference beyond it is a failure."""

from __future__ import annotations

import math

import pytest

from sweeper.machine import describe_machine, machine_kind
from sweeper.trained.reproduce import DIFFER, IDENTICAL, WITHIN_TOLERANCE, Reproduction, compare_predictions

HERE = describe_machine()
ELSEWHERE = {**HERE, "cpu": "AMD EPYC 7B13", "cpu_flags": "sse4_2 avx avx2 fma f16c"}


def rerun(original: float, reproduced: float, machine: dict[str, str] | None, moved: float = 0.0) -> Reproduction:
    return Reproduction("run", {"auc": 0.75, "eval_loss": original}, {"auc": 0.75, "eval_loss": reproduced}, 36,
                        int(moved > 0), moved, machine)


@pytest.mark.parametrize(("machine", "reproduced", "moved", "expected"), [
    (HERE, 0.6464732488, 0.0, IDENTICAL),
    (HERE, 0.6464735137, 0.0, DIFFER),  # the same kernels must give the same bits
    (ELSEWHERE, 0.6464735137, 3e-7, WITHIN_TOLERANCE),  # the case seen between an AMD EPYC and an AMX Xeon
    (None, 0.6464735137, 3e-7, WITHIN_TOLERANCE),  # a run of a release that did not record its machine
    (ELSEWHERE, 0.6464732488, 2e-4, DIFFER),  # a prediction moved beyond the tolerance
    (ELSEWHERE, 0.6474732488, 0.0, DIFFER),  # a metric moved by 1e-3
])
def test_outcome(machine: dict[str, str] | None, reproduced: float, moved: float, expected: str) -> None:
    outcome = rerun(0.6464732488, reproduced, machine, moved)
    assert outcome.outcome(1e-4) == expected
    assert outcome.summary(1e-4).startswith({IDENTICAL: "identical", WITHIN_TOLERANCE: "equal within 0.0001",
                                             DIFFER: "differ"}[expected])


def test_largest_difference_names_what_moved_most() -> None:
    outcome = rerun(0.6464732488, 0.6464735137, ELSEWHERE, moved=5e-6)
    name, value = outcome.largest_difference()
    assert name == "predictions" and value == 5e-6
    assert outcome.as_json()["largest_difference"] == {"name": "predictions", "value": 5e-6}
    assert "cpu 'AMD EPYC 7B13'" in outcome.summary()


def test_compare_predictions() -> None:
    assert compare_predictions([0.1, 0.5], [0.1, 0.5000002]) == (1, pytest.approx(2e-7))
    assert compare_predictions([0.1, 0.5], [0.1]) == (1, math.inf)
    assert compare_predictions(["fix bug"], ["fix a bug"]) == (1, None)  # generated text: no distance


def test_machine_kind_follows_the_kernels() -> None:
    assert machine_kind(HERE) == machine_kind(dict(HERE))
    assert machine_kind(HERE) != machine_kind(ELSEWHERE)
    assert machine_kind({**HERE, "torch": "2.12.0"}) != machine_kind(HERE)
