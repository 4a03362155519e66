"""A finished sweep through a real local Ray and a real MLflow server (artifacts on S3): pruning, nesting,
artifacts, `best` and `reproduce`. It reads the session's tiny sweep (`tiny_sweep.py`), which the report and
predict tests read too: one sweep serves them all."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from harness import last_json, spec_dict, sweeper
from services import MlflowServer
from tiny_sweep import CHANGES, TinySweep, tiny_sweep

pytestmark = pytest.mark.slow

SPEC = spec_dict("tiny-report", CHANGES)
METHODS = set(SPEC["search"]["method"]["choice"])
EPOCHS = SPEC["defaults"]["epochs"]


@pytest.fixture(scope="module")
def sweep(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> TinySweep:
    return tiny_sweep(mlflow_server.uri, tmp_path_factory.mktemp("tiny-sweep"))


def test_sweep_runs_every_method_and_prunes(sweep: TinySweep) -> None:
    trials = sweep.summary["trials"]
    assert sum(trials.values()) == SPEC["sweep"]["trials"]
    assert trials["pruned"] >= 1 and trials["failed"] == 0 and trials["killed"] == 0
    runs = sweep.trial_runs()
    assert {run.data.tags["sweeper.method"] for run in runs} == METHODS
    pruned_runs = [run for run in runs if run.data.tags["sweeper.state"] == "pruned"]
    assert len(pruned_runs) == trials["pruned"]


def test_pruned_trials_are_pruned_in_the_optuna_storage(sweep: TinySweep) -> None:
    storage = f"sqlite:///{sweep.workdir / 'results' / sweep.sweep_id / 'optuna.db'}"
    study = optuna.load_study(study_name=sweep.sweep_id, storage=storage)
    states = [trial.state for trial in study.trials]
    assert states.count(optuna.trial.TrialState.PRUNED) == sweep.summary["trials"]["pruned"]
    assert states.count(optuna.trial.TrialState.COMPLETE) == sweep.summary["trials"]["complete"]


def test_every_trial_is_a_finished_child_with_params_metrics_costs_artifacts(sweep: TinySweep) -> None:
    client = MlflowClient(sweep.uri)
    parent = client.get_run(sweep.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["trials_pruned"] == sweep.summary["trials"]["pruned"]
    assert "spec.yaml" in [a.path for a in client.list_artifacts(sweep.parent_run_id)]
    runs = sweep.trial_runs()
    assert len(runs) == SPEC["sweep"]["trials"]
    for run in runs:
        tags, data = run.data.tags, run.data
        assert tags["mlflow.parentRunId"] == sweep.parent_run_id and tags["sweeper.role"] == "trial"
        assert run.info.status == "FINISHED", run.info.run_name
        assert data.params["method"] == tags["sweeper.method"]
        assert {"lr", "data.path", "backbone", "seed"} <= set(data.params)
        assert tags["ray.node_id"] and tags["sweeper.data_digest"] and tags["ray.trial_id"]
        history = client.get_metric_history(run.info.run_id, "auc")
        assert [m.step for m in history] == list(range(1, len(history) + 1))
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert "model" in artifacts
        if tags["sweeper.state"] == "complete":
            assert len(history) == EPOCHS
            costs = {"trainable_params", "total_params", "train_seconds", "peak_memory_mb"}
            assert {"best_auc", *costs} <= set(data.metrics)
            assert {"predictions.csv", "config.json", "metrics.json"} <= artifacts
        else:
            assert len(history) < EPOCHS


def test_peft_artifacts_hold_only_what_trained(sweep: TinySweep) -> None:
    client = MlflowClient(sweep.uri)
    sizes: dict[str, int] = {}
    for run in sweep.trial_runs():
        if run.data.tags["sweeper.state"] != "complete":
            continue
        files = client.list_artifacts(run.info.run_id, "model")
        sizes.setdefault(run.data.tags["sweeper.method"], sum(f.file_size or 0 for f in files if not f.is_dir))
        if run.data.tags["sweeper.method"] == "lora":
            assert "adapter_model.safetensors" in {Path(f.path).name for f in files}
    assert "full" in sizes
    for method in ("lora", "adapter"):
        if method in sizes:
            assert sizes[method] < 0.2 * sizes["full"], sizes


def test_best_and_reproduce_give_the_same_metric(sweep: TinySweep, tmp_path: Path) -> None:
    rows = last_json(sweeper("best", sweep.sweep_id, "--tracking-uri", sweep.uri, "--json", cwd=tmp_path))
    ranked = [row for row in rows["runs"] if row["role"] == "trial"]  # then come the baselines
    assert ranked and ranked[0]["run_id"] == sweep.summary["best_run_id"]
    assert [t["auc"] for t in ranked] == sorted((t["auc"] for t in ranked), reverse=True)
    outcome = last_json(sweeper("reproduce", ranked[0]["run_id"], "--tracking-uri", sweep.uri, "--json",
                                cwd=tmp_path))
    assert outcome["original"]["auc"] == outcome["reproduced"]["auc"] == ranked[0]["auc"]
    assert outcome["original"] == outcome["reproduced"]
    assert outcome["same_machine"] is True and outcome["outcome"] == "identical"  # the trial's machine: bit for bit
