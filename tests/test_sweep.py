"""The smoke sweep through a real local Ray and a real MLflow server: pruning, nesting, artifacts, reproduce."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType

from services import MlflowServer

pytestmark = pytest.mark.slow

SMOKE = Path(__file__).parent.parent / "search_spaces" / "smoke.yaml"


@dataclass
class SweepRun:
    """What `sweeper run` printed and where it recorded the sweep."""

    uri: str
    workdir: Path
    summary: dict
    seconds: float
    output: str


def sweeper(*args: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sweeper.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def smoke_sweep(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> SweepRun:
    """`sweeper run search_spaces/smoke.yaml` against the MLflow server, once for this module."""
    workdir = tmp_path_factory.mktemp("smoke")
    started = time.monotonic()
    out = sweeper("run", str(SMOKE), "--tracking-uri", mlflow_server.uri, "--json", cwd=workdir)
    seconds = time.monotonic() - started
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"smoke sweep: {seconds:.0f} s, {summary['trials']}")
    return SweepRun(mlflow_server.uri, workdir, summary, seconds, out.stdout)


def trial_runs(sweep: SweepRun) -> list:
    client = MlflowClient(sweep.uri)
    experiment = client.get_experiment_by_name("smoke")
    return client.search_runs([experiment.experiment_id], "tags.`sweeper.role` = 'trial'", ViewType.ALL)


def test_sweep_runs_every_method_and_prunes(smoke_sweep: SweepRun) -> None:
    trials = smoke_sweep.summary["trials"]
    assert sum(trials.values()) == 11  # the spec's trials; its baselines and repeats are not trials
    assert trials["pruned"] >= 3 and trials["failed"] == 0 and trials["killed"] == 0
    runs = trial_runs(smoke_sweep)
    assert {run.data.tags["sweeper.method"] for run in runs} == {"full", "adapter", "lora"}
    pruned_runs = [run for run in runs if run.data.tags["sweeper.state"] == "pruned"]
    assert len(pruned_runs) == trials["pruned"]


def test_pruned_trials_are_pruned_in_the_optuna_storage(smoke_sweep: SweepRun) -> None:
    sweep_id = smoke_sweep.summary["sweep_id"]
    storage = f"sqlite:///{smoke_sweep.workdir / 'sweeper-results' / sweep_id / 'optuna.db'}"
    study = optuna.load_study(study_name=sweep_id, storage=storage)
    states = [trial.state for trial in study.trials]
    assert states.count(optuna.trial.TrialState.PRUNED) == smoke_sweep.summary["trials"]["pruned"]
    assert states.count(optuna.trial.TrialState.COMPLETE) == smoke_sweep.summary["trials"]["complete"]


def test_every_trial_is_a_finished_child_with_params_metrics_costs_artifacts(smoke_sweep: SweepRun) -> None:
    client = MlflowClient(smoke_sweep.uri)
    parent_id = smoke_sweep.summary["parent_run_id"]
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["trials_pruned"] == smoke_sweep.summary["trials"]["pruned"]
    assert "spec.yaml" in [a.path for a in client.list_artifacts(parent_id)]
    runs = trial_runs(smoke_sweep)
    assert len(runs) == 11
    for run in runs:
        tags, data = run.data.tags, run.data
        assert tags["mlflow.parentRunId"] == parent_id
        assert run.info.status == "FINISHED", run.info.run_name
        assert data.params["method"] == tags["sweeper.method"]
        assert {"lr", "data.path", "backbone", "seed"} <= set(data.params)
        assert tags["ray.node_id"] and tags["sweeper.data_digest"] and tags["ray.trial_id"]
        history = client.get_metric_history(run.info.run_id, "auc")
        assert [m.step for m in history] == list(range(1, len(history) + 1))
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert "model" in artifacts
        if tags["sweeper.state"] == "complete":
            assert len(history) == 3
            assert {"best_auc", "trainable_params", "total_params", "train_seconds", "peak_memory_mb"} <= set(data.metrics)
            assert {"predictions.csv", "config.json", "metrics.json"} <= artifacts
        else:
            assert len(history) < 3


def test_peft_artifacts_hold_only_what_trained(smoke_sweep: SweepRun) -> None:
    client = MlflowClient(smoke_sweep.uri)
    sizes: dict[str, int] = {}
    for run in trial_runs(smoke_sweep):
        if run.data.tags["sweeper.state"] != "complete":
            continue
        files = client.list_artifacts(run.info.run_id, "model")
        sizes.setdefault(run.data.tags["sweeper.method"], sum(f.file_size or 0 for f in files if not f.is_dir))
        if run.data.tags["sweeper.method"] == "lora":
            assert "adapter_model.safetensors" in {Path(f.path).name for f in files}
    if "full" in sizes:
        for method in ("lora", "adapter"):
            if method in sizes:
                assert sizes[method] < 0.2 * sizes["full"], sizes


def test_best_and_reproduce_give_the_same_metric(smoke_sweep: SweepRun, tmp_path: Path) -> None:
    out = sweeper("best", "--tracking-uri", smoke_sweep.uri, "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    ranked = [row for row in json.loads(out.stdout) if row["role"] == "trial"]  # then come the baselines
    assert ranked and ranked[0]["run_id"] == smoke_sweep.summary["best_run_id"]
    assert [t["auc"] for t in ranked] == sorted((t["auc"] for t in ranked), reverse=True)
    again = sweeper("reproduce", ranked[0]["run_id"], "--tracking-uri", smoke_sweep.uri, "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    outcome = json.loads(again.stdout)
    assert outcome["original"]["auc"] == outcome["reproduced"]["auc"] == ranked[0]["auc"]
    assert outcome["original"] == outcome["reproduced"]
