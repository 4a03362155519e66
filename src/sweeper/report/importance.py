"""Optuna's hyper-parameter importances of a sweep, from the study its parent run names.

The study is loaded from the `optuna.storage` tag. Conditional parameters (`lora.rank`) exist only in
some trials, so importances are computed over all completed trials for the parameters every one of
them has, and again per method over that method's trials.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import optuna

MIN_TRIALS = 3  # fANOVA on fewer completed trials says nothing


@dataclass
class Importances:
    """Importance per parameter, for all trials ('all') and per method; `notes` say what could not be computed."""

    groups: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def load_study(storage: str | None, study_name: str) -> tuple[optuna.Study | None, str]:
    """The sweep's study, or None and why not. A SQLite file that is not there is not created."""
    if not storage:
        return None, "the sweep's parent run has no optuna.storage tag"
    if "***" in storage:
        return None, f"the study storage {storage} is recorded without its password"
    if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).is_file():
        return None, f"the study file {storage.removeprefix('sqlite:///')} is not on this machine"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=study_name, storage=storage), ""
    except Exception as error:  # a storage we cannot open or a study that is not in it
        return None, f"cannot load study {study_name} from {storage}: {str(error).splitlines()[0]}"


def param_importances(study: optuna.Study) -> Importances:
    """fANOVA importances over all completed trials, then per method; too few trials give a note instead."""
    result = Importances()
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    groups: dict[str, list[optuna.trial.FrozenTrial]] = {"all": complete}
    for trial in complete:
        if "method" in trial.params:
            groups.setdefault(f"method={trial.params['method']}", []).append(trial)
    for name, trials in groups.items():
        common = set.intersection(*(set(t.params) for t in trials)) if trials else set()
        varied = sorted(key for key in common if len({repr(t.params[key]) for t in trials}) > 1)
        if len(trials) < MIN_TRIALS or not varied:
            why = f"{len(trials)} completed trial(s)" if len(trials) < MIN_TRIALS else "no parameter varies"
            result.notes.append(f"{name}: not computed ({why}; needs {MIN_TRIALS}+ trials and a varied parameter)")
            continue
        sub = optuna.create_study(directions=study.directions)
        sub.add_trials(trials)
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        target = None if len(study.directions) == 1 else (lambda t: t.values[0])  # the first objective
        try:
            result.groups[name] = dict(optuna.importance.get_param_importances(
                sub, evaluator=evaluator, params=varied, target=target))
        except (RuntimeError, ValueError) as error:
            result.notes.append(f"{name}: not computed ({str(error).splitlines()[0]})")
    return result
