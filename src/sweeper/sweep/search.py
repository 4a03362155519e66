"""Optuna sampling inside Ray Tune: a Ray `Searcher` over an Optuna study, and the study's sampler.

Ray's own `OptunaSearch` hard-codes Optuna's NopPruner, so no Optuna pruner can act through it.
Here an `OptunaSearcher` (using Optuna's public ask/tell API) suggests configurations and answers
"report this value at this step: prune?" for the scheduler in `pruning.py`. A pruned trial is told to the
study as PRUNED, never as COMPLETE with a truncated value, so the sampler is not misled.

A multi-objective study (`sweep.objectives`) is told one value per objective from the trial's final
result (its best metrics and its costs); Optuna cannot prune such a study, so nothing is reported to it.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from sweeper.direction import Objectives
from sweeper.recorded.objectives import study_objectives
from sweeper.spec import Spec
from sweeper.sweep.space import Space, grid
from sweeper.sweep.stopping import record_interval
from sweeper.timings import timed
from sweeper.tracking.schema import State

class OptunaSearcher(Searcher):
    """Suggests configurations from an Optuna study and records each trial's fate in it."""

    def __init__(self, study: optuna.Study, space: Space, metric: str, mode: str,
                 objectives: Objectives | None = None) -> None:
        super().__init__(metric=metric, mode=mode)
        self.study = study
        self.objectives = study_objectives(study) if objectives is None else objectives
        self.space = space
        self.live: dict[str, optuna.Trial] = {}
        self.numbers: dict[str, int] = {}
        self.pruned: set[str] = set()
        self.failed: set[str] = set()
        self.finished = False  # set by `finish`: the sweep is decided (sweeper.sweep.stopping)

    def __getstate__(self) -> dict[str, Any]:
        """Ray pickles the Tuner's settings for its own records; the live study stays behind."""
        return {key: value for key, value in self.__dict__.items() if key != "study"}

    def save(self, checkpoint_path: str) -> None:
        """Nothing to write: the searcher's state is its Optuna study, kept in the study's own storage (`sweeper
        resume` reloads it from there). Saying so keeps Ray's "save not implemented" warning from the user."""

    def restore(self, checkpoint_path: str) -> None:
        """See `save`: the study is reloaded from its storage, not from Ray's experiment folder."""

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        """Metric and mode come from the spec at construction; Tune's copies must agree."""
        return metric in (None, self.metric) and mode in (None, self.mode)

    def finish(self) -> None:
        """Start no new trial: `suggest` answers Ray Tune's FINISHED from now on; running trials go on."""
        self.finished = True

    @timed("optuna.suggest")
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.finished:
            return Searcher.FINISHED
        trial = self.study.ask()
        self.live[trial_id] = trial
        self.numbers[trial_id] = trial.number
        return {"values": self.space(trial), "optuna_trial": trial.number}

    @timed("optuna.report_and_check")
    def report_and_check(self, trial_id: str, step: int, value: float, may_prune: bool = True) -> bool:
        """Report an intermediate value; True when the pruner says stop (never when `may_prune` is False)."""
        trial = self.live.get(trial_id)
        if trial is None or self.objectives or not math.isfinite(value):
            return False
        trial.report(value, step)
        if may_prune and trial.should_prune():
            self.pruned.add(trial_id)
            return True
        return False

    @timed("optuna.on_trial_complete")
    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        trial = self.live.pop(trial_id, None)
        if trial is None:
            return
        values = None if error else self.final_values(result)
        if trial_id in self.pruned:
            self.study.tell(trial, state=TrialState.PRUNED)
        elif values is None:
            self.study.tell(trial, state=TrialState.FAIL)
            self.failed.add(trial_id)
        else:
            record_interval(trial, result, self.metric)
            self.study.tell(trial, values)

    def final_values(self, result: dict | None) -> float | list[float] | None:
        """The metric's value (or one value per objective) from a trial's final result; None if any is missing."""
        keys = [metric for metric, _ in self.objectives] or [self.metric]
        try:
            floats = [float((result or {})[key]) for key in keys]
        except (KeyError, TypeError, ValueError):
            return None
        if not all(math.isfinite(value) for value in floats):
            return None
        return floats if self.objectives else floats[0]

    def state_of(self, trial_id: str) -> str:
        """'pruned', 'failed' (no finite final value: told FAIL) or 'complete' for a finished trial, as the study
        recorded it."""
        if trial_id in self.pruned:
            return State.PRUNED
        return State.FAILED if trial_id in self.failed else State.COMPLETE


class TuneGridSampler(optuna.samplers.GridSampler):
    """Optuna's grid, without the `study.stop()` it calls when the grid is used up: that only works inside
    `study.optimize`, and here Ray Tune counts the trials (`sweep.trials`; more than the grid repeats points)."""

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, state: optuna.trial.TrialState,
                    values: Any) -> None:
        return None


def make_sampler(spec: Spec) -> optuna.samplers.BaseSampler:
    """TPE (default), random or grid, seeded from the spec."""
    seed = spec.sweep.seed
    if spec.sweep.searcher == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.sweep.searcher == "grid":
        return TuneGridSampler(grid(spec), seed=seed)
    return optuna.samplers.TPESampler(seed=seed)
