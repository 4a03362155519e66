"""Stop when decided: the bootstrap error evaluator against a hand computation, Optuna's regret bound on a settled and
an improving study, the spec's checks and the searcher's FINISHED; and (slow) a sweep with a factor of large effect
that stops as decided, says so in `--json`, the parent run's note and `sweeper best`, and stays decided on resume."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np

import optuna
import pytest
from mlflow import MlflowClient
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.study import StudyDirection
from optuna.trial import create_trial
from ray.tune.search import Searcher

from harness import last_json, sweeper, trial_runs, write_spec
from services import MlflowServer

from sweeper.errors import SpecError
from sweeper.report.verdict import verdict
from sweeper.spec import parse_spec
from sweeper.sweep.search import OptunaSearcher
from sweeper.sweep.stopping import BootstrapErrorEvaluator, answers, improvement_bound, record_interval, untried
from sweeper.recorded.sweeps import Predictions, SweepDetails, SweepRecord, TrialRun
from sweeper.tracking.schema import INTERVAL_ATTR, STOP_BOUND, STOP_ERROR, STOP_UNCHANGED, State, Tag

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


def test_an_improving_search_keeps_a_bound_above_the_error_and_a_settled_one_falls_below() -> None:
    """Improving: every trial better than the last along x (AUC 0.50 to 0.86 over the lower half of the range, intervals
    +-0.02, a standard error of 0.0102): Optuna's regret bound stays well above the error, growing as the trend goes on.
    Settled: a two-level factor with a 0.3 effect and constant noise (sd 0.01; intervals +-0.1 as on a small
    validation split, error 0.051): the bound falls below the error."""
    improving = [improvement_bound(study_of([(i / 20, 0.5 + 0.04 * i, 0.02) for i in range(n)],
                                            FloatDistribution(0, 1)), seed=0) for n in (4, 6, 8, 10)]
    assert all(bound > 4 * 0.0102 for bound in improving), improving
    rng = random.Random(0)
    settled = study_of([(("none", "expert")[i % 2], (0.55, 0.85)[i % 2] + rng.gauss(0, 0.01), 0.1) for i in range(8)],
                       CategoricalDistribution(["none", "expert"]))
    error = BootstrapErrorEvaluator().evaluate(settled.trials, settled.direction)
    assert improvement_bound(settled, seed=0) < error
    assert math.isnan(improvement_bound(study_of([(0.5, 0.7, 0.1)], FloatDistribution(0, 1)), seed=0))  # one trial


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
    import yaml

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
           "sweep.trials": 8, "sweep.max_concurrent": 2,
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
    print("stopped:", stopped, "trials:", summary["trials"])
    assert stopped is not None, (summary["trials"], {name: [(m.step, round(m.value, 4)) for m in client.get_metric_history(
        summary["parent_run_id"], name)] for name in (STOP_BOUND, STOP_ERROR, STOP_UNCHANGED)},
        [(run.data.params.get("lr"), run.data.params.get("lora.rank"), run.data.tags.get(Tag.STATE),
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
