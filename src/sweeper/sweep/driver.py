"""The sweep driver: builds and runs the Ray Tune Tuner for a spec.

Searcher and pruner are Optuna's (`search.py`, `pruning.py`), the study lives in an RDB storage the user
can open with optuna-dashboard, trials run the `trainable`, and the callbacks write MLflow runs
and draw progress. The same code runs on a laptop (an embedded Ray) and on a cluster.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import tune
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from sweeper.folders import cache_dir
from sweeper.data.records import Dataset
from sweeper.errors import SweeperError
from sweeper.report.verdict import log_verdict, sweep_verdict
from sweeper.spec import Spec, format_objectives
from sweeper.sweep.callbacks import TrackingCallback
from sweeper.sweep.followups import RepeatSearcher, RepeatTracking, log_baselines, plan_repeats
from sweeper.cache.frozen import trim_to_budget
from sweeper.sweep.preflight import check_before_trials
from sweeper.sweep.progress import ProgressCallback
from sweeper.sweep.pruning import OptunaPruningScheduler, make_pruner
from sweeper.sweep.search import OptunaSearcher, direction, make_sampler, name_objectives, study_objectives
from sweeper.sweep.space import define_by_run
from sweeper.sweep.trainable import train_in_ray
from sweeper.tracking.client import Tracker
from sweeper.recorded.notes import write_sweep_note
from sweeper.tracking.schema import (BEST_PREFIX, BEST_VALUE, COMPUTE_SECONDS, PARETO_FILE, PARETO_TRIALS,
                                     RESOLVABLE_DIFFERENCE, SPEC_FILE, TRIALS_PREFIX, VALIDATION_COMMITS,
                                     VALIDATION_POSITIVES, Role, State, Tag)
from sweeper.recorded.sweeps import SweepRecord, best_per_method, find_sweep, ranked, trial_runs


# A trial whose worker or node dies resumes from its last checkpoint on another one, twice at most. Failures the trial
# raises itself (bad data, a NaN loss, ...) never reach Ray as errors: the trainable ends the trial FAILED at once.
RETRIES = 2


@dataclass
class SweepSummary:
    """How a sweep went: where it is recorded, and its trials by state (all its sessions, resumed ones too)."""

    sweep_id: str
    parent_run_id: str
    experiment: str
    tracking_uri: str
    study_storage: str
    counts: dict[str, int] = field(default_factory=dict)
    best_value: float | None = None
    best_run_id: str | None = None
    baselines: dict[str, float | None] = field(default_factory=dict)  # name -> the metric's validation value
    repeats: dict[str, int] = field(default_factory=dict)  # repeat runs by state
    verdict: str | None = None  # sweeper.report.verdict's sentences, once the sweep completed

    def count(self, state: str) -> int:
        return self.counts.get(state, 0)


@dataclass
class InterruptedSweep:
    """Where an interrupted sweep stands: its parent run, how many trials ended, and its Optuna storage."""

    parent_run_id: str
    finished: int
    study_storage: str


def run_sweep(spec: Spec, spec_text: str, tracking_uri: str | None = None, sweep_id: str | None = None,
              source: str = "spec", resume: InterruptedSweep | None = None) -> SweepSummary:
    """Run the trials of `spec` (those still to run, when resuming) through Ray Tune, recorded in MLflow and Optuna."""
    sweep_id = sweep_id or f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    dataset, resolution = check_before_trials(spec, source)
    trimmed = trim_to_budget()
    if trimmed:
        print(f"frozen-prefix cache: {len(trimmed)} least recently used entries removed "
              f"({sum(entry.size for entry in trimmed) / 2**20:.0f} MB) to stay within its budget", flush=True)
    study_storage = resume.study_storage if resume else (
        spec.tracking.study or default_study_storage(spec.tracking.storage, sweep_id))
    study = open_study(spec, sweep_id, study_storage)
    searcher = OptunaSearcher(study, define_by_run(spec), spec.metric, spec.mode)
    tracker = Tracker.connect(tracking_uri or spec.tracking.uri)
    if resume:
        parent_run_id = resume.parent_run_id
        tracker.client.update_run(parent_run_id, status="RUNNING")
    else:
        parent_run_id = tracker.start_sweep(spec.name, sweep_id, spec_text, {
            Tag.OPTUNA_STORAGE: redact(study_storage), Tag.METRIC: spec.metric, Tag.MODE: spec.mode},
            searched=list(spec.search))
    tracker.log_metrics(parent_run_id, {RESOLVABLE_DIFFERENCE: resolution.value, VALIDATION_COMMITS: resolution.commits,
                                        **({} if resolution.positives is None else
                                           {VALIDATION_POSITIVES: resolution.positives})})
    trials = spec.sweep.trials - (resume.finished if resume else 0)
    tracking = TrackingCallback(tracker, spec.name, parent_run_id, sweep_id, searcher, dataset)
    print(f"sweep {sweep_id}: {trials} trials{' to go' if resume else ''}, MLflow {tracker.uri} (run {parent_run_id}), "
          f"Optuna {redact(study_storage)}", flush=True)

    state = State.KILLED
    name = sweep_id if not resume else f"{sweep_id}-resumed-{time.strftime('%H%M%S')}"
    try:
        if not tracker.trial_runs(parent_run_id, tracker.experiment_id(spec.name), Role.BASELINE):
            log_baselines(tracker, spec, dataset, parent_run_id, sweep_id)
        if trials > 0:
            start_ray()
            tuner(spec, name, trials, searcher, [tracking, ProgressCallback(spec.metric, searcher, list(spec.search))],
                  OptunaPruningScheduler(searcher, spec.metric), spec.sweep.time_budget_s).fit()
        tracking.flush()  # the trials' runs are complete in MLflow: the repeats pick the best of them
        run_repeats(spec, name, tracker, SweepRecord(sweep_id, parent_run_id, tracker.experiment_id(spec.name),
                                                     spec.metric, spec.mode), study, dataset)
        state = State.COMPLETE
    finally:
        try:
            tracking.flush()  # the trial events' MLflow requests, before anything reads MLflow back
        finally:
            tracking.close()
            summary = summarise(tracker, SweepSummary(sweep_id, parent_run_id, spec.name, tracker.uri, study_storage),
                                study, spec.metric)
            tracker.end_run(parent_run_id, state)
            sweep = find_sweep(tracker, sweep_id)
            found = sweep_verdict(tracker, sweep) if state == State.COMPLETE else None
            if found is not None:
                log_verdict(tracker, sweep, found)
                summary.verdict = found.text
            write_sweep_note(tracker, sweep, verdict=summary.verdict)
    if spec.sweep.register_best and summary.best_run_id:
        from sweeper.trained.register import register_run

        best = spec.sweep.register_best
        register_run(tracker, summary.best_run_id, best if isinstance(best, str) else spec.name)
    return summary


def open_study(spec: Spec, sweep_id: str, storage: str) -> optuna.Study:
    """The sweep's Optuna study (created, or loaded when resuming), with the spec's sampler, pruner and directions."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return name_objectives(optuna.create_study(
        study_name=sweep_id, storage=storage, load_if_exists=True,
        directions=[direction(mode) for _, mode in spec.objectives()] or [direction(spec.mode)],
        sampler=make_sampler(spec), pruner=make_pruner(spec.sweep.pruner)), spec.objectives())


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


def run_repeats(spec: Spec, name: str, tracker: Tracker, sweep: SweepRecord, study: optuna.Study,
                dataset: Dataset) -> None:
    """Re-train the best configuration of each method with `sweep.repeats` more seeds, through a second Tuner
    (no pruning), recorded as repeat runs; repeats a resumed sweep had finished are not run again."""
    if spec.sweep.repeats == 0:
        return
    best = [(trial.run_id, trial.number, trial.method)
            for trial in best_per_method(ranked(trial_runs(tracker, sweep), sweep.metric, sweep.mode))]
    done = {(run.data.tags.get(Tag.REPEAT_OF, ""), int(run.data.params.get("seed", -1)))
            for run in tracker.trial_runs(sweep.run_id, sweep.experiment_id, Role.REPEAT)
            if run.data.tags.get(Tag.STATE) == State.COMPLETE}
    searched = {trial.number: trial.params for trial in study.get_trials(deepcopy=False)}
    jobs = plan_repeats(spec, best, searched, done)
    if not jobs:
        return
    seeds = sorted({job.seed for job in jobs})
    print(f"repeats: the best trial of each method ({', '.join(f'#{n} {m}' for _, n, m in best)}) again with seeds "
          f"{', '.join(map(str, seeds))}: {len(jobs)} runs", flush=True)
    start_ray()
    searcher = RepeatSearcher(jobs, spec.metric, spec.mode)
    tracking = RepeatTracking(tracker, spec.name, sweep.run_id, sweep.sweep_id, searcher, dataset)
    try:
        tuner(spec, f"{name}-repeats", len(jobs), searcher,
              [tracking, ProgressCallback(spec.metric, searcher, ["seed"])]).fit()
    finally:
        try:
            tracking.flush()
        finally:
            tracking.close()


def summarise(tracker: Tracker, summary: SweepSummary, study: optuna.Study, metric: str) -> SweepSummary:
    """Counts by state, compute and the best run, from MLflow and the study; logged on the parent run. The
    baselines' values of `metric` and the repeats by state are read too (for the summary, not logged).

    A multi-objective study has no single best trial: the best run is the Pareto trial best on the primary
    metric, the objectives are tagged (`sweeper.objectives`) and the Pareto set is logged as `pareto.json`.
    """
    experiment_id = tracker.experiment_id(summary.experiment)
    runs = tracker.trial_runs(summary.parent_run_id, experiment_id)
    for state in State.ENDED:
        summary.counts[state] = sum(1 for run in runs if run.data.tags.get(Tag.STATE) == state)
    summary.baselines = {run.data.tags.get(Tag.BASELINE, run.info.run_name): run.data.metrics.get(BEST_PREFIX + metric)
                         for run in tracker.trial_runs(summary.parent_run_id, experiment_id, Role.BASELINE)}
    repeats = [run.data.tags.get(Tag.STATE) for run in
               tracker.trial_runs(summary.parent_run_id, experiment_id, Role.REPEAT)]
    summary.repeats = {state: repeats.count(state) for state in State.ENDED if state in repeats}
    metrics = {TRIALS_PREFIX + state: float(count) for state, count in summary.counts.items()}
    metrics[COMPUTE_SECONDS] = sum(run.data.metrics.get(COMPUTE_SECONDS, 0.0) for run in runs)
    complete = [trial for trial in study.trials if trial.state == optuna.trial.TrialState.COMPLETE]
    run_of = {run.data.tags.get(Tag.OPTUNA_TRIAL): run.info.run_id for run in runs}
    objectives = study_objectives(study)
    if objectives:
        tracker.set_tags(summary.parent_run_id, {Tag.OBJECTIVES: format_objectives(objectives)})
    if complete:
        if objectives:  # the best of the Pareto set by the primary metric (the first objective)
            pareto = study.best_trials
            sign = 1.0 if objectives[0][1] == "max" else -1.0
            best = max(pareto, key=lambda trial: sign * trial.values[0])
            summary.best_value = metrics[BEST_VALUE] = float(best.values[0])
            metrics[PARETO_TRIALS] = float(len(pareto))
            tracker.client.log_dict(summary.parent_run_id, {
                "objectives": [{"metric": metric, "mode": mode} for metric, mode in objectives],
                "trials": [{"number": trial.number, "run_id": run_of.get(str(trial.number)),
                            "values": dict(zip((metric for metric, _ in objectives), trial.values))}
                           for trial in sorted(pareto, key=lambda trial: trial.number)]}, PARETO_FILE)
        else:
            best = study.best_trial
            summary.best_value = metrics[BEST_VALUE] = float(best.value)
        summary.best_run_id = run_of.get(str(best.number))
        if summary.best_run_id:
            tracker.set_tags(summary.parent_run_id, {Tag.BEST_RUN: summary.best_run_id})
    tracker.log_metrics(summary.parent_run_id, metrics)
    return summary


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
    runs = tracker.trial_runs(parent.info.run_id, parent.info.experiment_id, role=None)  # repeats too
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


def start_ray() -> None:
    """Join the cluster in RAY_ADDRESS (a Ray job's driver does; `auto` joins one `ray start` began here),
    else start an embedded one for this sweep, even if another Ray runs on this machine.

    Ray turns token authentication on for a new local cluster (writing a token to ~/.ray/auth_token).
    """
    if ray.is_initialized():
        return
    ray.init(address=os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False, log_to_driver=False,
             configure_logging=False)


def storage_location(storage: str) -> str:
    """Ray Tune storage: s3:// URIs as given, folders made absolute (workers may start elsewhere)."""
    return storage if "://" in storage else str(Path(storage).expanduser().resolve())


def default_study_storage(storage: str, sweep_id: str) -> str:
    """A SQLite file per sweep: beside Ray's results in a local folder, else (S3) in `$SWEEPER_CACHE/studies`."""
    if "://" in storage:
        folder = cache_dir() / "studies" / sweep_id
    else:
        folder = Path(storage).expanduser().resolve() / sweep_id
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'optuna.db'}"


def redact(url: str) -> str:
    """A storage URL without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy URL: show nothing of it that could be secret
        return url.split("@")[-1]


def summary_as_dict(summary: SweepSummary) -> dict[str, Any]:
    """For --json output."""
    return {"sweep_id": summary.sweep_id, "parent_run_id": summary.parent_run_id, "experiment": summary.experiment,
            "tracking_uri": summary.tracking_uri, "best_value": summary.best_value, "best_run_id": summary.best_run_id,
            "trials": {state: summary.count(state) for state in State.ENDED}, "baselines": summary.baselines,
            "repeats": summary.repeats, "verdict": summary.verdict}
