"""The sweep driver: runs a spec's sweep as a short list of phases over one `RunningSweep`.

`run_sweep` checks the spec and its data, opens the sweep (its Optuna study, its MLflow parent run), runs the
baselines, the trials (through Ray Tune: `tuner.py`, with the callbacks `trial_callbacks` builds), the repeats,
then summarises what it recorded and writes the verdict. Searcher and pruner are Optuna's (`search.py`,
`pruning.py`); the study lives in an RDB storage the user can open with optuna-dashboard (`study.py`); an
interrupted sweep goes on through `resume.py`. The same code runs on a laptop (an embedded Ray) and on a cluster.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import optuna

from sweeper.cache.frozen import trim_to_budget
from sweeper.data.records import Dataset
from sweeper.metrics.resolution import Resolution
from sweeper.recorded.notes import write_sweep_note
from sweeper.recorded.summary import SweepSummary, log_summary, summarise
from sweeper.recorded.sweeps import SweepRecord, best_per_method, ranked, trial_runs
from sweeper.report.verdict import log_verdict, sweep_verdict
from sweeper.spec import Spec
from sweeper.sweep.callbacks import TrackingCallback
from sweeper.sweep.followups import RepeatSearcher, RepeatTracking, log_baselines, plan_repeats
from sweeper.sweep.preflight import check_before_trials
from sweeper.sweep.progress import ProgressCallback
from sweeper.sweep.pruning import OptunaPruningScheduler
from sweeper.sweep.resume import InterruptedSweep
from sweeper.sweep.search import OptunaSearcher
from sweeper.sweep.space import define_by_run
from sweeper.sweep.stopping import StopCallback, StopCheck
from sweeper.sweep.study import open_study, redact, study_storage
from sweeper.sweep.tuner import start_ray, tuner
from sweeper.tracking.client import Tracker
from sweeper.tracking.schema import (RESOLVABLE_DIFFERENCE, VALIDATION_COMMITS, VALIDATION_POSITIVES, Role, State,
                                     Tag)


@dataclass
class RunningSweep:
    """The sweep being run, as each phase finds it and leaves it: its spec, data, study, searcher, tracker, parent
    run (`record`), the callback that records its trials, and the state its parent run ends in."""

    spec: Spec
    dataset: Dataset
    study: optuna.Study
    searcher: OptunaSearcher
    tracker: Tracker
    record: SweepRecord
    tracking: TrackingCallback
    name: str  # Ray Tune's name for this session of the sweep (a resumed session has its own)
    trials: int  # the trials this session runs
    study_storage: str
    stop: StopCheck  # whether the sweep is decided (`sweep.stop`), checked after each ended trial
    state: str = State.KILLED


def run_sweep(spec: Spec, spec_text: str, tracking_uri: str | None = None, sweep_id: str | None = None,
              source: str = "spec", resume: InterruptedSweep | None = None) -> SweepSummary:
    """Run the trials of `spec` (those still to run, when resuming) through Ray Tune, recorded in MLflow and Optuna."""
    dataset, resolution = check(spec, source)
    sweep = open_sweep(spec, spec_text, tracking_uri, sweep_id or f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                       dataset, resolution, resume)
    try:
        run_baselines(sweep)
        run_trials(sweep)
        run_repeats(sweep)
        sweep.state = State.COMPLETE
    finally:
        summary = finish(sweep)
    register_best(sweep, summary)
    return summary


def check(spec: Spec, source: str) -> tuple[Dataset, Resolution]:
    """The preflight checks (data, methods, memory) before anything starts; the frozen-prefix cache trimmed to its
    budget. Returns the data and the smallest difference its validation split resolves."""
    dataset, resolution = check_before_trials(spec, source)
    trimmed = trim_to_budget()
    if trimmed:
        print(f"frozen-prefix cache: {len(trimmed)} least recently used entries removed "
              f"({sum(entry.size for entry in trimmed) / 2**20:.0f} MB) to stay within its budget", flush=True)
    return dataset, resolution


def open_sweep(spec: Spec, spec_text: str, tracking_uri: str | None, sweep_id: str, dataset: Dataset,
               resolution: Resolution, resume: InterruptedSweep | None) -> RunningSweep:
    """The sweep's study and parent run: created, or reopened when resuming."""
    storage = resume.study_storage if resume else study_storage(spec, sweep_id)
    study = open_study(spec, sweep_id, storage)
    searcher = OptunaSearcher(study, define_by_run(spec), spec.metric, spec.mode)
    tracker = Tracker.connect(tracking_uri or spec.tracking.uri)
    if resume:
        parent_run_id = resume.parent_run_id
        tracker.client.update_run(parent_run_id, status="RUNNING")
    else:
        parent_run_id = tracker.start_sweep(spec.name, sweep_id, spec_text, {
            Tag.OPTUNA_STORAGE: redact(storage), Tag.METRIC: spec.metric, Tag.MODE: spec.mode},
            searched=list(spec.search))
    tracker.log_metrics(parent_run_id, {RESOLVABLE_DIFFERENCE: resolution.value, VALIDATION_COMMITS: resolution.commits,
                                        **({} if resolution.positives is None else
                                           {VALIDATION_POSITIVES: resolution.positives})})
    record = SweepRecord(sweep_id, parent_run_id, tracker.experiment_id(spec.name), spec.metric, spec.mode)
    trials = spec.sweep.trials - (resume.finished if resume else 0)
    print(f"sweep {sweep_id}: {trials} trials{' to go' if resume else ''}, MLflow {tracker.uri} (run {parent_run_id}), "
          f"Optuna {redact(storage)}", flush=True)
    return RunningSweep(spec, dataset, study, searcher, tracker, record,
                        TrackingCallback(tracker, spec.name, parent_run_id, sweep_id, searcher, dataset),
                        sweep_id if not resume else f"{sweep_id}-resumed-{time.strftime('%H%M%S')}", trials, storage,
                        StopCheck(spec, tracker, record, study, resume.finished if resume else 0))


def run_baselines(sweep: RunningSweep) -> None:
    """The spec's baselines, fitted on the trials' split, once per sweep (a resumed sweep has them already)."""
    record = sweep.record
    if not sweep.tracker.child_runs(record.run_id, record.experiment_id, Role.BASELINE):
        log_baselines(sweep.tracker, sweep.spec, sweep.dataset, record.run_id, record.sweep_id)


def run_trials(sweep: RunningSweep) -> None:
    """The searched trials through Ray Tune, under Optuna's pruner and the spec's time budget; their MLflow runs are
    complete when it returns."""
    if sweep.trials > 0 and not sweep.stop.stopped:  # a resumed decided sweep stays decided
        start_ray()
        tuner(sweep.spec, sweep.name, sweep.trials, sweep.searcher, trial_callbacks(sweep),
              OptunaPruningScheduler(sweep.searcher, sweep.spec.metric), sweep.spec.sweep.time_budget_s).fit()
    sweep.tracking.flush()  # the trials' runs are complete in MLflow: the repeats pick the best of them


def trial_callbacks(sweep: RunningSweep) -> list[Any]:
    """What Ray Tune calls on the trials' events: the MLflow runs, the stopping check, and the progress table."""
    return [sweep.tracking, StopCallback(sweep.stop, sweep.tracking, sweep.searcher),
            ProgressCallback(sweep.spec.metric, sweep.searcher, list(sweep.spec.search))]


def run_repeats(sweep: RunningSweep) -> None:
    """Re-train the best configuration of each method with `sweep.repeats` more seeds, through a second Tuner
    (no pruning), recorded as repeat runs; repeats a resumed sweep had finished are not run again."""
    spec, tracker, record = sweep.spec, sweep.tracker, sweep.record
    if spec.sweep.repeats == 0:
        return
    best = [(trial.run_id, trial.number, trial.method)
            for trial in best_per_method(ranked(trial_runs(tracker, record), record.metric, record.mode))]
    done = {(run.data.tags.get(Tag.REPEAT_OF, ""), int(run.data.params.get("seed", -1)))
            for run in tracker.child_runs(record.run_id, record.experiment_id, Role.REPEAT)
            if run.data.tags.get(Tag.STATE) == State.COMPLETE}
    searched = {trial.number: trial.params for trial in sweep.study.get_trials(deepcopy=False)}
    jobs = plan_repeats(spec, best, searched, done)
    if not jobs:
        return
    seeds = sorted({job.seed for job in jobs})
    print(f"repeats: the best trial of each method ({', '.join(f'#{n} {m}' for _, n, m in best)}) again with seeds "
          f"{', '.join(map(str, seeds))}: {len(jobs)} runs", flush=True)
    start_ray()
    searcher = RepeatSearcher(jobs, spec.metric, spec.mode)
    tracking = RepeatTracking(tracker, spec.name, record.run_id, record.sweep_id, searcher, sweep.dataset)
    try:
        tuner(spec, f"{sweep.name}-repeats", len(jobs), searcher,
              [tracking, ProgressCallback(spec.metric, searcher, ["seed"])]).fit()
    finally:
        try:
            tracking.flush()
        finally:
            tracking.close()


def finish(sweep: RunningSweep) -> SweepSummary:
    """However the sweep ended: its trial events recorded, its summary logged, its parent run ended in its state;
    a completed sweep's verdict logged; the sweep's note written."""
    tracker, record = sweep.tracker, sweep.record
    try:
        sweep.tracking.flush()  # the trial events' MLflow requests, before anything reads MLflow back
    finally:
        sweep.tracking.close()
        summary = summarise(tracker, SweepSummary(record.sweep_id, record.run_id, sweep.spec.name, tracker.uri,
                                                  sweep.study_storage), sweep.study, record.metric)
        log_summary(tracker, summary)
        tracker.end_run(record.run_id, sweep.state)
        found = sweep_verdict(tracker, record) if sweep.state == State.COMPLETE else None
        if found is not None:
            log_verdict(tracker, record, found)
            summary.verdict = found.text
        summary.stopped = sweep.stop.stopped.as_dict() if sweep.stop.stopped else None
        write_sweep_note(tracker, record, verdict=sweep.stop.note(summary.verdict))
    return summary


def register_best(sweep: RunningSweep, summary: SweepSummary) -> None:
    """The best trial's model in the Model Registry, when the spec asks (`sweep.register_best`)."""
    best = sweep.spec.sweep.register_best
    if best and summary.best_run_id:
        from sweeper.trained.register import register_run

        register_run(sweep.tracker, summary.best_run_id, best if isinstance(best, str) else sweep.spec.name)
