"""Stop when decided: the bootstrap error evaluator against a hand computation, the spec's checks and the searcher's
FINISHED; the driver's check (StopCallback over StopCheck) trial by trial on a real study and MLflow store, no Ray: an
improving search never decides, a settled one does, each run's predictions read once; and (slow) a sweep with a
factor of large effect, two trials at a time with pruning, that stops as decided, says so in `--json`, the parent
run's note and `sweeper best`, lets its running trial finish, and stays decided on resume."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import optuna
import pytest
import yaml
from mlflow import MlflowClient
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.study import StudyDirection
from optuna.trial import create_trial
from ray.tune.search import Searcher

from harness import last_json, sweeper, trial_runs, write_spec
from services import MlflowServer

from sweeper.errors import SpecError
from sweeper.metrics.bootstrap import classification_intervals, flat_intervals
from sweeper.metrics.classification import classification_metrics
from sweeper.predictions import SCORES, write_predictions
from sweeper.report.verdict import verdict
from sweeper.spec import parse_spec
from sweeper.sweep.search import OptunaSearcher
from sweeper.sweep.space import define_by_run
from sweeper.sweep.stopping import (BootstrapErrorEvaluator, StopCallback, StopCheck, answers, improvement_bound,
                                    record_interval, untried)
from sweeper.sweep.study import open_study
from sweeper.recorded.sweeps import Predictions, SweepDetails, SweepRecord, TrialRun
from sweeper.tracking.client import Tracker
from sweeper.tracking.schema import (BEST_PREFIX, CI_HIGH, CI_LOW, INTERVAL_ATTR, PREDICTIONS_FILE, STOP_BOUND,
                                     STOP_ERROR, STOP_UNCHANGED, Role, State, Tag)

optuna.logging.set_verbosity(optuna.logging.ERROR)


def study_of(points: list[tuple[object, float, float]], distribution: optuna.distributions.BaseDistribution,
             direction: str = "maximize") -> optuna.Study:
    """A study of completed trials (x, value, half-width of the value's 95 % interval)."""
    study = optuna.create_study(direction=direction)
    for x, value, half in points:
        study.add_trial(create_trial(params={"x": x}, distributions={"x": distribution}, value=value,
                                     user_attrs={INTERVAL_ATTR: [value - half, value + half]}))
    return study


def test_the_error_is_the_best_trials_bootstrap_standard_error_by_hand() -> None:
    """A 95 % interval is +-1.959964 standard errors: [0.70, 0.86] of the best (maximising) trial gives
    0.16 / 3.919928 = 0.040817; minimising, the lowest trial's [0.20, 0.30] gives 0.10 / 3.919928 = 0.025511."""
    trials = [create_trial(value=0.55, user_attrs={INTERVAL_ATTR: [0.40, 0.70]}),
              create_trial(value=0.78, user_attrs={INTERVAL_ATTR: [0.70, 0.86]}),
              create_trial(value=0.25, user_attrs={INTERVAL_ATTR: [0.20, 0.30]}),
              create_trial(state=optuna.trial.TrialState.PRUNED)]
    evaluator = BootstrapErrorEvaluator()
    assert evaluator.evaluate(trials, StudyDirection.MAXIMIZE) == pytest.approx(0.040817, abs=1e-6)
    assert evaluator.evaluate(trials, StudyDirection.MINIMIZE) == pytest.approx(0.025511, abs=1e-6)
    assert math.isnan(evaluator.evaluate([create_trial(value=0.9)], StudyDirection.MAXIMIZE))  # no interval logged
    assert math.isnan(evaluator.evaluate(trials[3:], StudyDirection.MAXIMIZE))  # nothing completed


def test_the_searcher_keeps_the_interval_and_answers_finished_once_told() -> None:
    study = optuna.create_study(direction="maximize")
    searcher = OptunaSearcher(study, lambda trial: {"x": trial.suggest_float("x", 0, 1)}, "auc", "max")
    assert searcher.suggest("a") is not None
    searcher.on_trial_complete("a", {"auc": 0.8, "auc_ci_low": 0.7, "auc_ci_high": 0.9})
    assert study.trials[0].user_attrs[INTERVAL_ATTR] == [0.7, 0.9]
    searcher.finish()
    assert searcher.suggest("b") == Searcher.FINISHED
    assert len(study.trials) == 1  # no trial was asked for


def test_record_interval_skips_a_missing_or_undefined_interval() -> None:
    study = optuna.create_study()
    for result in ({"auc": 0.8}, {"auc_ci_low": math.nan, "auc_ci_high": 0.9}, None):
        trial = study.ask()
        record_interval(trial, result, "auc")
        study.tell(trial, 0.5)
        assert INTERVAL_ATTR not in study.trials[-1].user_attrs


def test_the_bound_needs_two_completed_trials_and_shows_no_warning() -> None:
    """Optuna's evaluator is experimental and says so on every construction: the check keeps that out of the sweep's
    output after each trial."""
    assert math.isnan(improvement_bound(study_of([(0.5, 0.7, 0.1)], FloatDistribution(0, 1)), seed=0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert improvement_bound(study_of([(0.2, 0.6, 0.1), (0.8, 0.7, 0.1)], FloatDistribution(0, 1)), seed=0) > 0


# A sweep run as the driver runs it, minus Ray and training: the spec's Optuna study, searcher and StopCheck, a
# trial's run recorded as the tracking callback records it, and the StopCallback after each trial, in a real MLflow
# store. The validation split: 200 commits, 15 % defective; every trial sees the same noise (constant noise), its
# scores separating the classes by a `signal` of its own.
RNG = np.random.default_rng(0)
LABELS = [int(value) for value in RNG.random(200) < 0.15]
NOISE = RNG.normal(size=200)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Tracker, Path]:
    """One SQLite MLflow store for the module (creating one takes seconds), its artifacts in a temporary folder."""
    folder = tmp_path_factory.mktemp("stop-store")
    return Tracker.connect(f"sqlite:///{folder / 'mlflow.db'}"), folder


class Written:
    """The tracking callback as the stop callback sees it: here every request was made before the check runs."""

    def flush(self) -> None:
        pass


@dataclass
class Driven:
    """What a driven sweep left: its check, its searcher, and the number of trials ended when each decision came."""

    check: StopCheck
    searcher: OptunaSearcher
    decisions: list[int]


def drive(store: tuple[Tracker, Path], name: str, search: dict, trials: int,
          signal: Callable[[dict, int], float], queue: Sequence[dict] = ()) -> Driven:
    """Trials one at a time until the budget is spent or the searcher answers FINISHED; `queue`: values Optuna
    gives its first trials (a search that walks one way); `signal(values, trial number)`."""
    tracker, folder = store
    stop = {"when": "decided", "min_trials": 4, "patience": 2}
    text = yaml.safe_dump({"name": name, "baselines": [], "search": search,
                           "sweep": {"trials": trials, "searcher": "random", "seed": 0, "stop": stop}})
    spec = parse_spec(yaml.safe_load(text), f"{name}.yaml", text)
    study = open_study(spec, name, f"sqlite:///{folder / (name + '-optuna.db')}")
    for values in queue:
        study.enqueue_trial(values)
    searcher = OptunaSearcher(study, define_by_run(spec), spec.metric, spec.mode)
    tracker.client.create_experiment(name, artifact_location=str(folder / name))
    parent = tracker.start_sweep(name, name, text, {Tag.METRIC: spec.metric, Tag.MODE: spec.mode})
    check = StopCheck(spec, tracker, SweepRecord(name, parent, tracker.experiment_id(name), spec.metric, spec.mode),
                      study)
    callback, decisions = StopCallback(check, Written(), searcher), []
    for index in range(trials):
        suggested = searcher.suggest(f"t{index}")
        if suggested == Searcher.FINISHED:
            break
        values, number = suggested["values"], suggested["optuna_trial"]
        strength = signal(values, number)
        scores = [1 / (1 + math.exp(-(strength * label + noise))) for label, noise in zip(LABELS, NOISE)]
        result = {**classification_metrics(LABELS, scores),
                  **flat_intervals(classification_intervals(LABELS, scores, metrics=[spec.metric]))}
        run = tracker.start_trial(name, parent, name, f"trial-{number}", values,
                                  {Tag.OPTUNA_TRIAL: str(number), Tag.METHOD: "lora"})
        tracker.log_metrics(run, {BEST_PREFIX + spec.metric: result[spec.metric], "train_flops": 1e12,
                                  **{key: result[key] for key in (spec.metric + CI_LOW, spec.metric + CI_HIGH)}})
        write_predictions(folder / PREDICTIONS_FILE, SCORES,
                          ((f"c{i}", label, score) for i, (label, score) in enumerate(zip(LABELS, scores))))
        tracker.log_file(run, folder / PREDICTIONS_FILE)
        tracker.end_run(run, State.COMPLETE)
        searcher.on_trial_complete(f"t{index}", result)  # Ray Tune tells the searcher, then the callbacks
        callback.on_trial_complete(index, [], None)
        if check.stopped is not None and not decisions:
            decisions.append(check.ended)
    return Driven(check, searcher, decisions)


def history(driven: Driven, name: str) -> dict[int, float]:
    return {metric.step: metric.value
            for metric in driven.check.tracker.client.get_metric_history(driven.check.sweep.run_id, name)}


@pytest.mark.slow  # about 15 s: one sweep of 8 trials and one of 10 through a SQLite MLflow store
def test_an_improving_search_never_decides_and_a_settled_one_does(store: tuple[Tracker, Path],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Improving: each trial a step further up the learning rate and better than the last (AUC from about 0.66 to
    0.98), the upper half of the range untried: the improvement still possible stays above the error, the verdict
    keeps moving, and the sweep runs its whole budget undecided. Settled: lr 1e-2 learns (signal 1.5, AUC 0.91),
    1e-4 does not, the rank does not matter: the check decides inside the budget, and the searcher starts nothing
    after it. Each completed run's predictions are downloaded once, however many checks read them."""
    improving = drive(store, "improving", {"lr": {"loguniform": [1e-5, 1e-1]}}, 8,
                      lambda values, number: 0.3 * (number + 1), [{"lr": 1e-5 * 10 ** (i / 4)} for i in range(8)])
    assert improving.decisions == [] and improving.check.stopped is None and improving.check.ended == 8
    values = [trial.value for trial in improving.searcher.study.trials]
    assert values == sorted(values) and len(set(values)) == 8, values  # each trial better than the last
    assert improving.searcher.suggest("after") != Searcher.FINISHED
    bounds, errors = history(improving, STOP_BOUND), history(improving, STOP_ERROR)
    assert all(bounds[step] > errors[step] for step in range(4, 9)), (bounds, errors)
    assert Tag.STOPPED not in improving.check.tracker.client.get_run(improving.check.sweep.run_id).data.tags

    downloads: list[tuple[str, str]] = []
    client = store[0].client
    real = client.download_artifacts
    monkeypatch.setattr(client, "download_artifacts",
                        lambda run_id, path, dst_path=None: downloads.append((run_id, path)) or real(run_id, path,
                                                                                                   dst_path))
    settled = drive(store, "settled", {"lr": {"choice": [1e-4, 1e-2]}, "lora.rank": {"choice": [4, 8]}}, 10,
                    lambda values, number: 1.5 if values["lr"] == 1e-2 else 0.0)
    assert len(settled.decisions) == 1 and 4 <= settled.decisions[0] == settled.check.ended < 10, settled.decisions
    stopped = settled.check.stopped
    assert stopped is not None and stopped.bound < stopped.error and stopped.trials == settled.decisions[0]
    assert settled.searcher.suggest("after") == Searcher.FINISHED
    assert len(settled.searcher.study.trials) == settled.check.ended  # no trial was asked for after the decision
    assert Tag.STOPPED in settled.check.tracker.client.get_run(settled.check.sweep.run_id).data.tags
    assert history(settled, STOP_UNCHANGED)[settled.check.ended] >= 2
    predictions = [run_id for run_id, path in downloads if path == PREDICTIONS_FILE]
    assert len(predictions) == len(set(predictions)) == settled.check.ended, downloads


def test_a_level_no_completed_or_pruned_trial_had_keeps_the_sweep_undecided() -> None:
    """Conditional and numeric keys are not levels; a failed trial did not try its level, a pruned one did (the pruner
    judged it: a level it always prunes must not keep the sweep from deciding)."""
    spec = parse_spec({"name": "x", "search": {"lr": {"choice": [1e-4, 1e-2]}, "lora.rank": {"choice": [4, 8]},
                                               "adapter.bottleneck": {"choice": [8, 16], "when": {"method": "adapter"}},
                                               "warmup_ratio": {"float": [0.0, 0.2]}}}, "x.yaml")
    study = optuna.create_study(direction="maximize")
    lr, rank = CategoricalDistribution([1e-4, 1e-2]), CategoricalDistribution([4, 8])

    def add(params: dict, state: optuna.trial.TrialState, value: float | None = None) -> None:
        study.add_trial(create_trial(params=params, distributions={"lr": lr, "lora.rank": rank}, state=state,
                                     value=value))

    add({"lr": 1e-4, "lora.rank": 4}, optuna.trial.TrialState.COMPLETE, 0.5)
    add({"lr": 1e-2, "lora.rank": 8}, optuna.trial.TrialState.FAIL)
    assert untried(spec, study) == ["lr 0.01", "lora.rank 8"]
    add({"lr": 1e-2, "lora.rank": 4}, optuna.trial.TrialState.PRUNED)
    assert untried(spec, study) == ["lora.rank 8"]
    add({"lr": 1e-2, "lora.rank": 8}, optuna.trial.TrialState.COMPLETE, 0.7)
    assert untried(spec, study) == []


def scored_sweep(trials: list[tuple[str, str, float]]) -> SweepDetails:
    """Completed trials (lr, lora.rank, signal) scored on the same 300 commits (10 % defective): scores separate the
    classes by `signal` standard deviations; the same FLOPs for every trial."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    labels = [int(value) for value in rng.random(300) < 0.1]
    runs, predictions = [], {}
    for number, (lr, rank, signal) in enumerate(trials):
        scores = [float(1 / (1 + np.exp(-(signal * y + rng.normal())))) for y in labels]
        run = TrialRun(f"run-{number}", f"trial-{number}", number, "lora", "complete", {"lr": lr, "lora.rank": rank},
                       {"best_auc": roc_auc_score(labels, scores), "train_flops": 1e12, "trainable_params": 1e5})
        runs.append(run)
        rows = {f"c{i}": (str(y), repr(v)) for i, (y, v) in enumerate(zip(labels, scores))}
        predictions[run.run_id] = Predictions(("id", "label", "score"), rows)
    spec = parse_spec({"name": "x", "baselines": [], "search": {"lr": {"choice": [1e-4, 1e-2]},
                                                                  "lora.rank": {"choice": [4, 8]}}}, "x")
    return SweepDetails(SweepRecord("s", "p", "0", "auc", "max"), "x", {}, {}, spec, runs, [], [], predictions)


def test_answers_hold_when_a_trial_only_swaps_what_does_not_matter_and_change_when_a_factor_resolves() -> None:
    """lr 1e-2 learns (signal 3), 1e-4 does not (0), whatever the rank: `lr` matters, the rank does not, and the
    choice is lr 1e-2 at its cost. A new trial that only swaps the rank leaves the answers as they were; while no
    trial had learnt, `lr` did not matter."""
    base = [("0.0001", "4", 0.0), ("0.01", "4", 3.0), ("0.01", "8", 3.0)]
    details = scored_sweep(base)
    first = answers(verdict(details), details)
    assert first == (None, (("lr", "0.01"),), ("1e+12", ("lr", "0.01"))), first
    more = scored_sweep([*base, ("0.0001", "8", 0.0)])
    assert answers(verdict(more), more) == first
    before = scored_sweep([base[0], ("0.0001", "8", 0.0)])
    assert answers(verdict(before), before)[1] == ()


@pytest.mark.parametrize("stop, trials, field, words", [
    ({"when": "decided", "min_trials": 9}, 8, "sweep.stop.min_trials",
     "min_trials (9) is larger than sweep.trials (8)"),
    ({"when": "decided", "min_trials": 2, "patience": 8}, 8, "sweep.stop.patience", "patience (8) leaves no trial"),
    ({"when": "sometimes"}, 8, "sweep.stop.when", "'never' or 'decided'"),
    ({"when": "decided", "min_trials": 1}, 8, "sweep.stop.min_trials", "greater than or equal to 2"),
])
def test_bad_stop_settings_name_the_field_and_the_fix(stop: dict, trials: int, field: str, words: str) -> None:
    text = f"name: x\nsweep:\n  trials: {trials}\n  stop: {stop}\n"

    with pytest.raises(SpecError) as error:
        parse_spec(yaml.safe_load(text), "x.yaml", text)
    message = str(error.value)
    assert field in message and words in message and "x.yaml:" in message, message


def test_when_never_is_the_default_and_a_small_budget_is_fine_with_it() -> None:
    spec = parse_spec({"name": "x", "sweep": {"trials": 2}}, "x.yaml")
    assert spec.sweep.stop.when == "never" and spec.sweep.stop.min_trials > spec.sweep.trials


# A factor of large effect (a learning rate of 1e-4 learns nothing in one epoch, 1e-2 does: about +0.3 AUC), a LoRA
# rank that hardly matters, seeded trials: their noise is the same run after run. 160 validation commits, 12 of them
# defective, resolve the learning rate (at 300 commits, 7 defective, nothing resolves). Two trials at a time, and the
# median pruner on an evaluation halfway through the epoch (15 steps), so the stop meets a running trial and, where
# it comes late enough, pruned ones. Random search with seed 0 draws lr 1e-2, 1e-2, 1e-4 first: 3 start-up trials let
# the third complete whatever the timing (with 2, every lr 1e-4 trial could be pruned and the verdict would know
# nothing of the learning rate). Decided inside the budget.
DECIDED = {"data": {"path": "bundled:jitdp", "sample": 400, "split": {"kind": "random", "valid": 0.4},
                    "max_length": 32},
           "defaults.eval_every_steps": 8,
           "search": {"lr": {"choice": [1.0e-4, 1.0e-2]}, "lora.rank": {"choice": [4, 8]}},
           "sweep.trials": 8, "sweep.max_concurrent": 2, "sweep.repeats": 1,
           "sweep.pruner": {"kind": "median", "startup_trials": 3, "warmup_steps": 0},
           "sweep.stop": {"when": "decided", "min_trials": 3, "patience": 2}}


@pytest.mark.slow
def test_a_settled_sweep_stops_as_decided_and_stays_decided_on_resume(tmp_path: Path,
                                                                      mlflow_server: MlflowServer) -> None:
    uri = mlflow_server.uri
    spec = write_spec(tmp_path, "decided", DECIDED)
    summary = last_json(sweeper("run", str(spec), "--sweep-id", "decided-1", "--tracking-uri", uri, "--json",
                                cwd=tmp_path, timeout=600))
    stopped = summary["stopped"]
    client = MlflowClient(uri)
    figures = {name: [(metric.step, round(metric.value, 4)) for metric in
                      client.get_metric_history(summary["parent_run_id"], name)]
               for name in (STOP_BOUND, STOP_ERROR, STOP_UNCHANGED)}
    assert stopped is not None, (summary["trials"], figures, [
        (run.data.params.get("lr"), run.data.params.get("lora.rank"), run.data.tags.get(Tag.STATE),
         run.data.metrics.get("best_auc")) for run in trial_runs(uri, summary["parent_run_id"])])
    ran = sum(summary["trials"].values())
    # two at a time: the trial still running at the stop finished, and no other started
    assert 3 <= stopped["trials"] <= ran <= stopped["trials"] + 1 < 8 + 1, (stopped, summary["trials"])
    assert stopped["bound"] < stopped["error"] and "decided after" in stopped["reason"]
    runs = trial_runs(uri, summary["parent_run_id"])
    assert len(runs) == ran
    assert {(run.info.status, run.data.tags[Tag.STATE]) for run in runs} <= {("FINISHED", State.COMPLETE),
                                                                            ("FINISHED", State.PRUNED)}, \
        [(run.info.status, run.data.tags.get(Tag.STATE)) for run in runs]
    repeats = trial_runs(uri, summary["parent_run_id"], role=Role.REPEAT)  # the best trial again, after the stop
    assert [run.data.tags[Tag.STATE] for run in repeats] == [State.COMPLETE]
    parent = client.get_run(summary["parent_run_id"])
    assert "Stopped early, decided after" in parent.data.tags[Tag.NOTE]
    for name, last in ((STOP_BOUND, ran), (STOP_ERROR, ran), (STOP_UNCHANGED, stopped["trials"])):
        steps = [metric.step for metric in client.get_metric_history(parent.info.run_id, name)]
        assert steps and max(steps) == last, (name, steps)  # after each ended trial, at step = trials ended; the
    unchanged = client.get_metric_history(parent.info.run_id, STOP_UNCHANGED)  # verdict's stability until decided
    assert max(unchanged, key=lambda metric: metric.step).value >= 2

    best = last_json(sweeper("best", "decided-1", "--tracking-uri", uri, "--json", cwd=tmp_path))
    assert best["trials"] == {"budget": 8, "ran": ran, "stopped": stopped}
    text = sweeper("best", "decided-1", "--tracking-uri", uri, cwd=tmp_path).stdout
    assert f"{ran} of a budget of 8 trials ran: stopped early, decided after" in text
    assert "`lr` matters" in best["verdict"], best["verdict"]  # decided on the factor, not on noise

    resumed = last_json(sweeper("resume", "decided-1", "--tracking-uri", uri, "--json", cwd=tmp_path, timeout=600))
    assert resumed["stopped"] == stopped and sum(resumed["trials"].values()) == ran
    assert len(trial_runs(uri, summary["parent_run_id"])) == ran  # no trial started
    assert len(trial_runs(uri, summary["parent_run_id"], role=Role.REPEAT)) == 1  # nor a repeat
