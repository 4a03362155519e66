"""Resuming an interrupted sweep (`sweeper resume`): its dead runs and Optuna trials ended, the configurations they
were training queued again, and how many trials had ended, so that `run_sweep` runs only the rest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import optuna

from sweeper.errors import SweeperError
from sweeper.tracking.client import Tracker
from sweeper.tracking.schema import SPEC_FILE, Role, State, Tag


@dataclass
class InterruptedSweep:
    """Where an interrupted sweep stands: its parent run, how many trials ended, and its Optuna storage."""

    parent_run_id: str
    finished: int
    study_storage: str


def recover_interrupted(tracker: Tracker, sweep_id: str, study_storage: str | None) -> tuple[str, InterruptedSweep]:
    """Make an interrupted sweep ready to go on: its dead runs end as KILLED, its dead Optuna trials FAIL and their
    configurations are queued to run again. Returns its spec text and where it stands."""
    parents = tracker.sweep_runs(None, sweep_id)
    if not parents:
        raise SweeperError(f"no sweep '{sweep_id}' in MLflow at {tracker.uri}")
    parent = parents[0]
    storage = study_storage or parent.data.tags.get(Tag.OPTUNA_STORAGE, "")
    if "***" in storage:
        raise SweeperError(f"the Optuna storage of sweep '{sweep_id}' has a password: pass it with --study URL")
    spec_text = tracker.client.download_artifacts(parent.info.run_id, SPEC_FILE)
    runs = tracker.child_runs(parent.info.run_id, parent.info.experiment_id, role=None)  # repeats too
    for run in runs:
        if run.info.status == "RUNNING":
            tracker.end_run(run.info.run_id, State.KILLED)
    study = optuna.load_study(study_name=sweep_id, storage=storage)
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        # The interrupted configuration runs again. Not `skip_if_exists`: it matches the failed trial itself and
        # never enqueues; a trial leaves RUNNING once, so a second resume cannot queue it twice.
        study.enqueue_trial(trial.params)
    finished = sum(1 for run in runs if run.data.tags.get(Tag.ROLE) == Role.TRIAL
                   and run.data.tags.get(Tag.STATE) in (State.COMPLETE, State.PRUNED, State.FAILED))
    return Path(spec_text).read_text(encoding="utf-8"), InterruptedSweep(parent.info.run_id, finished, storage)
