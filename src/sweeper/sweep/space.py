"""The spec's search space as an Optuna define-by-run function.

Parameters are suggested in spec order; one with `when` is suggested only if the values chosen
so far (or the trial defaults) match, so `lora.rank` exists only in LoRA trials.

    >>> from sweeper.spec import parse_spec
    >>> spec = parse_spec({"name": "x", "search": {"method": {"choice": ["full", "lora"]},
    ...                                             "lora.rank": {"choice": [8, 16], "when": {"method": "lora"}}}}, "x")
    >>> suggest = define_by_run(spec)
    >>> study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    >>> for _ in range(3):
    ...     print(suggest(study.ask()))
    {'method': 'lora', 'lora.rank': 16}
    {'method': 'full'}
    {'method': 'lora', 'lora.rank': 16}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna

from sweeper.errors import SpecError
from sweeper.spec import Distribution, Spec

Space = Callable[[optuna.Trial], dict[str, Any]]


def define_by_run(spec: Spec) -> Space:
    """A function that suggests one trial's searched values, honouring `when` conditions."""
    defaults = spec.base_trial().flat()

    def suggest(trial: optuna.Trial) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for key, distribution in spec.search.items():
            if distribution.applies({**defaults, **values}):
                values[key] = suggest_one(trial, key, distribution)
        return values

    return suggest


def suggest_one(trial: optuna.Trial, key: str, distribution: Distribution) -> Any:
    """One value from Optuna for one distribution."""
    if distribution.choice is not None:
        return trial.suggest_categorical(key, distribution.choice)
    if distribution.int_range is not None:
        low, high = distribution.int_range
        return trial.suggest_int(key, low, high, step=int(distribution.step or 1), log=distribution.log)
    if distribution.loguniform is not None:
        return trial.suggest_float(key, *distribution.loguniform, log=True)
    assert distribution.float_range is not None
    return trial.suggest_float(key, *distribution.float_range, step=distribution.step, log=distribution.log)


def grid(spec: Spec) -> dict[str, list[Any]]:
    """The search space as a grid for Optuna's GridSampler (choices and stepped ints only)."""
    values: dict[str, list[Any]] = {}
    for key, distribution in spec.search.items():
        if distribution.choice is not None:
            values[key] = distribution.choice
        elif distribution.int_range is not None:
            low, high = distribution.int_range
            values[key] = list(range(low, high + 1, int(distribution.step or 1)))
        else:
            raise SpecError("spec", f"search.{key}", "the grid searcher takes only choice and int parameters",
                            "use searcher: tpe or random, or list the values as a choice")
    return values
