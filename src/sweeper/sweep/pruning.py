"""Optuna's pruners inside Ray Tune: a scheduler that asks the study's pruner after each evaluation of a trial.

Ray Tune can stop a trial only from a scheduler, and its `OptunaSearch` hard-codes Optuna's NopPruner; so the
`OptunaSearcher` reports each evaluation to its Optuna trial and this scheduler returns STOP when the study's
pruner says so. A pruned trial is told to the study as PRUNED (see `OptunaSearcher.on_trial_complete`).

A trial's last evaluation (the end of its training plan, or early stopping; the trial flags it) is reported to the
study, so later trials are compared with it, but never pruned: stopping there saves no compute and would record a
finished trial as pruned, without its final metrics. Evaluations are the pruner's steps, so with `eval_every_steps`
its rungs fall inside the first epoch and a hopeless trial stops early.
"""

from __future__ import annotations

from typing import Any

import optuna
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from sweeper.spec import PrunerConfig
from sweeper.sweep.search import OptunaSearcher
from sweeper.sweep.trainable import EVALUATION, FINAL, LAST_EVALUATION


class OptunaPruningScheduler(FIFOScheduler):
    """Runs trials first-in first-out and stops those the Optuna pruner prunes, except at their last evaluation."""

    def __init__(self, searcher: OptunaSearcher, metric: str) -> None:
        super().__init__()
        self.searcher = searcher
        self.pruning_metric = metric

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        if result.get(FINAL) or self.pruning_metric not in result:
            return TrialScheduler.CONTINUE
        value = float(result[self.pruning_metric])
        last = bool(result.get(LAST_EVALUATION))
        if self.searcher.report_and_check(trial.trial_id, int(result[EVALUATION]), value, may_prune=not last):
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE


def make_pruner(config: PrunerConfig) -> optuna.pruners.BasePruner:
    """The Optuna pruner a spec names.

    Steps are evaluations numbered from 1, and Optuna prunes from step `n_warmup_steps` on, so `warmup_steps: N`
    (N evaluations are safe) is `n_warmup_steps=N + 1`.
    """
    if config.kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=config.startup_trials,
                                           n_warmup_steps=config.warmup_steps + 1)
    if config.kind == "percentile":
        return optuna.pruners.PercentilePruner(config.percentile, n_startup_trials=config.startup_trials,
                                               n_warmup_steps=config.warmup_steps + 1)
    if config.kind == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=config.min_resource,
                                                      reduction_factor=config.reduction_factor)
    if config.kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=config.min_resource, reduction_factor=config.reduction_factor)
    return optuna.pruners.NopPruner()
