"""The spec's pruner settings mean what they say in Optuna's terms."""

from __future__ import annotations

import optuna

from sweeper.sweep.pruning import make_pruner
from sweeper.spec import PrunerConfig


def test_warmup_steps_is_the_number_of_evaluations_that_are_never_pruned() -> None:
    study = optuna.create_study(direction="maximize",
                                pruner=make_pruner(PrunerConfig(kind="median", startup_trials=1, warmup_steps=1)))
    good = study.ask()
    for step in (1, 2, 3):  # evaluations are numbered from 1, as the trainable reports them
        good.report(0.9, step)
    study.tell(good, 0.9)
    bad = study.ask()
    bad.report(0.1, 1)
    assert not bad.should_prune(), "the first evaluation is inside warmup_steps: 1"
    bad.report(0.1, 2)
    assert bad.should_prune()
