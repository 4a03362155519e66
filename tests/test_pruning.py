"""The spec's pruner settings mean what they say in Optuna's terms; a trial's last evaluation is never pruned."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from mlflow import MlflowClient
from ray.tune.schedulers import TrialScheduler

from harness import fresh_cache, last_json, sweeper, trial_runs, write_spec
from sweeper.spec import PrunerConfig
from sweeper.sweep.pruning import OptunaPruningScheduler, make_pruner
from sweeper.sweep.search import OptunaSearcher
from sweeper.sweep.trainable import EVALUATION, LAST_EVALUATION


def test_warmup_steps_is_the_number_of_evaluations_that_are_never_pruned() -> None:
    study = optuna.create_study(direction="maximize",
                                pruner=make_pruner(PrunerConfig(kind="median", startup_trials=1, warmup_steps=1)))
    good = study.ask()
    for step in (1, 2, 3):  # evaluations are numbered from 1, as the trainable reports them
        good.report(0.9, step)
    study.tell(good, 0.9)
    bad = study.ask()
    bad.report(0.1, 1)
    assert not bad.should_prune(), "the first evaluation is inside warmup_steps: 1"
    bad.report(0.1, 2)
    assert bad.should_prune()


def test_the_scheduler_never_prunes_at_a_trials_last_evaluation() -> None:
    study = optuna.create_study(direction="maximize",
                                pruner=make_pruner(PrunerConfig(kind="median", startup_trials=1)))
    searcher = OptunaSearcher(study, lambda trial: {}, "auc", "max")
    scheduler = OptunaPruningScheduler(searcher, "auc")
    searcher.suggest("good")
    for step in (1, 2):
        assert scheduler.on_trial_result(None, SimpleNamespace(trial_id="good"), {
            "auc": 0.9, EVALUATION: step, LAST_EVALUATION: int(step == 2)}) == TrialScheduler.CONTINUE
    searcher.on_trial_complete("good", {"auc": 0.9})
    for trial_id in ("bad", "bad at the end"):
        searcher.suggest(trial_id)
    assert scheduler.on_trial_result(None, SimpleNamespace(trial_id="bad"), {
        "auc": 0.1, EVALUATION: 1, LAST_EVALUATION: 0}) == TrialScheduler.STOP
    # the same value at the trial's last evaluation: reported to the study, the trial left to finish
    assert scheduler.on_trial_result(None, SimpleNamespace(trial_id="bad at the end"), {
        "auc": 0.1, EVALUATION: 1, LAST_EVALUATION: 1}) == TrialScheduler.CONTINUE
    assert searcher.live["bad at the end"].should_prune()  # what Optuna alone would have done
    assert searcher.state_of("bad at the end") == "complete"
    assert study.trials[2].intermediate_values == {1: 0.1}


@pytest.mark.slow
def test_a_sweep_records_no_trial_as_pruned_after_its_last_evaluation_and_tags_its_caches(
        mlflow_server, tmp_path: Path) -> None:
    """Three evaluations per trial, inside the one epoch (`eval_every_steps`), and successive halving with rungs at
    the first and the third: trials that fall behind at the first stop there; one that falls behind only at the
    third, its last, completes (with the seeds here trial 5; it was recorded as pruned before)."""
    spec = write_spec(tmp_path, "rungs", {
        "defaults.eval_every_steps": 2, "defaults.lora": {"rank": 4, "layers": "3"},
        "search": {"lr": {"loguniform": [1.0e-5, 3.0e-2]}},
        "sweep.trials": 6, "sweep.pruner": {"kind": "successive_halving", "min_resource": 1, "reduction_factor": 3}})
    cache = fresh_cache(tmp_path / "cache")
    summary = last_json(sweeper("run", str(spec), "--tracking-uri", mlflow_server.uri, "--json", cwd=tmp_path,
                                env={"SWEEPER_CACHE": str(cache)}))
    runs = trial_runs(mlflow_server.uri, summary["parent_run_id"])
    client = MlflowClient(mlflow_server.uri)
    states = [(run.data.tags["sweeper.state"], len(client.get_metric_history(run.info.run_id, "epoch")))
              for run in runs]
    assert max(count for _, count in states) == 3, states  # 84 training commits, batches of 16: steps 2, 4, 6
    assert ("pruned", 3) not in states, states
    assert ("pruned", 1) in states, states  # mid-epoch: the first epoch is all there is
    encoding = {run.data.tags.get("sweeper.encoding_key") for run in runs}
    frozen = [run.data.tags.get("sweeper.frozen_cache", "") for run in runs]
    assert len(encoding) == 1 and len(str(next(iter(encoding)))) == 32, encoding
    assert frozen[0].startswith("layer 3: built "), frozen
    assert all(note == frozen[0].replace("built", "reused") for note in frozen[1:]), frozen
