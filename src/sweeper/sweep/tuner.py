"""Ray Tune's side of a sweep: joining a Ray cluster (or starting one for the sweep) and the Tuner that runs a
searcher's trials with the trainable, its scheduler, resources, storage and callbacks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from sweeper.spec import Spec
from sweeper.sweep.trainable import train_in_ray

# A trial whose worker or node dies resumes from its last checkpoint on another one, twice at most. Failures the trial
# raises itself (bad data, a NaN loss, ...) never reach Ray as errors: the trainable ends the trial FAILED at once.
RETRIES = 2


def start_ray() -> None:
    """Join the cluster in RAY_ADDRESS (a Ray job's driver does; `auto` joins one `ray start` began here),
    else start an embedded one for this sweep, even if another Ray runs on this machine.

    Ray turns token authentication on for a new local cluster (writing a token to ~/.ray/auth_token).
    """
    if ray.is_initialized():
        return
    ray.init(address=os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False, log_to_driver=False,
             configure_logging=False)


def tuner(spec: Spec, name: str, trials: int, searcher: Searcher, callbacks: list[Any],
          scheduler: TrialScheduler | None = None, time_budget_s: float | None = None) -> tune.Tuner:
    """The Ray Tune Tuner: a searcher (Optuna's, or the repeats'), a scheduler (Optuna's pruner; None: no pruning),
    resources per trial, storage, callbacks."""
    # Keeping one checkpoint per trial forces a snapshot after each; Ray warns about that every time.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    resources = {"cpu": spec.sweep.resources.cpu, "gpu": spec.sweep.resources.gpu}
    return tune.Tuner(
        tune.with_resources(train_in_ray, resources),
        param_space={"base": spec.base_trial().model_dump(mode="json")},
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, metric=spec.metric, mode=spec.mode,
                                    num_samples=trials, max_concurrent_trials=spec.sweep.max_concurrent,
                                    time_budget_s=time_budget_s, reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=storage_location(spec.tracking.storage), callbacks=callbacks,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                                  failure_config=tune.FailureConfig(max_failures=RETRIES), verbose=0),
    )


def storage_location(storage: str) -> str:
    """Ray Tune storage: s3:// URIs as given, folders made absolute (workers may start elsewhere)."""
    return storage if "://" in storage else str(Path(storage).expanduser().resolve())
