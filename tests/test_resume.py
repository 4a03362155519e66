"""Driver killed mid-sweep (SIGKILL), then `sweeper resume`: the same sweep carries on to the spec's count."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType

pytestmark = pytest.mark.slow

SPEC = """name: resumable
data: {path: bundled:jitdp, sample: 200, split: {kind: time, valid: 0.25}, max_length: 64}
defaults: {method: lora, epochs: 4, lora: {rank: 4}}
search:
  lr: {loguniform: [1.0e-4, 3.0e-3]}
sweep: {trials: 5, searcher: random, pruner: {kind: none}, max_concurrent: 1}
"""


def trial_runs(client: MlflowClient) -> list:
    experiment = client.get_experiment_by_name("resumable")
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id], "tags.`sweeper.role` = 'trial'", ViewType.ALL)


def test_killed_driver_resumes_the_same_sweep(tmp_path: Path) -> None:
    spec = tmp_path / "resumable.yaml"
    spec.write_text(SPEC)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    command = [sys.executable, "-m", "sweeper.cli", "run", str(spec), "--sweep-id", "resumable-1"]
    with (tmp_path / "first.log").open("w") as log:
        driver = subprocess.Popen(command, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:  # kill it once two trials are done and a third is training
        states = [run.data.tags.get("sweeper.state") for run in trial_runs(client)]
        if states.count("complete") >= 2 and "running" in states:
            break
        assert driver.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        time.sleep(1)
    else:
        pytest.fail("the sweep never got two trials done")
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    before = {run.info.run_id: run for run in trial_runs(client)}
    assert any(run.info.status == "RUNNING" for run in before.values())  # the crash left an orphan

    out = subprocess.run([sys.executable, "-m", "sweeper.cli", "resume", "resumable-1", "--json"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])

    runs = trial_runs(client)
    states = Counter(run.data.tags["sweeper.state"] for run in runs)
    assert states["complete"] + states["pruned"] + states["failed"] == 5  # the spec's count
    assert states["killed"] >= 1 and all(run.info.status != "RUNNING" for run in runs)
    for run_id, run in before.items():  # finished trials were not run again
        if run.data.tags["sweeper.state"] == "complete":
            assert client.get_run(run_id).data.metrics == run.data.metrics
    numbers = [run.data.tags["optuna.trial"] for run in runs]
    assert len(numbers) == len(set(numbers))  # no Optuna trial has two runs
    parents = client.search_runs([runs[0].info.experiment_id], "tags.`sweeper.role` = 'sweep'", ViewType.ALL)
    assert len(parents) == 1 and parents[0].info.run_id == summary["parent_run_id"]
    assert parents[0].info.status == "FINISHED" and summary["trials"]["complete"] == states["complete"]
    study = optuna.load_study(study_name="resumable-1",
                              storage=f"sqlite:///{tmp_path / 'sweeper-results' / 'resumable-1' / 'optuna.db'}")
    assert Counter(t.state for t in study.trials)[optuna.trial.TrialState.COMPLETE] == states["complete"]
    killed_params = [run.data.params["lr"] for run in runs if run.data.tags["sweeper.state"] == "killed"]
    rerun_params = [run.data.params["lr"] for run in runs if run.data.tags["sweeper.state"] == "complete"]
    assert set(killed_params) <= set(rerun_params)  # the interrupted configuration ran again
