"""Driver killed mid-sweep (SIGKILL), then `sweeper resume`: the same sweep carries on to the spec's count."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType

from harness import last_json, sweeper, sweeper_process, trial_runs, write_spec

pytestmark = pytest.mark.slow

# Five LoRA trials of four epochs, one at a time: long enough to kill the driver while the third trains.
CHANGES = {"data": {"path": "bundled:jitdp", "sample": 200, "split": {"kind": "time", "valid": 0.25}, "max_length": 64},
           "search": {"lr": {"loguniform": [1.0e-4, 3.0e-3]}}, "defaults.epochs": 4, "sweep.trials": 5}


def test_killed_driver_resumes_the_same_sweep(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "resumable", CHANGES)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    with (tmp_path / "first.log").open("w") as log, \
            sweeper_process("run", str(spec), "--sweep-id", "resumable-1", cwd=tmp_path, stdout=log) as driver:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:  # kill it once two trials are done and a third is training
            states = [run.data.tags.get("sweeper.state") for run in trial_runs(uri, experiment="resumable")]
            if states.count("complete") >= 2 and "running" in states:
                break
            assert driver.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            time.sleep(1)
        else:
            pytest.fail("the sweep never got two trials done")
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    before = {run.info.run_id: run for run in trial_runs(uri, experiment="resumable")}
    assert any(run.info.status == "RUNNING" for run in before.values())  # the crash left an orphan

    summary = last_json(sweeper("resume", "resumable-1", "--json", cwd=tmp_path, timeout=600))

    runs = trial_runs(uri, experiment="resumable")
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
                              storage=f"sqlite:///{tmp_path / 'results' / 'resumable-1' / 'optuna.db'}")
    assert Counter(t.state for t in study.trials)[optuna.trial.TrialState.COMPLETE] == states["complete"]
    killed_params = [run.data.params["lr"] for run in runs if run.data.tags["sweeper.state"] == "killed"]
    rerun_params = [run.data.params["lr"] for run in runs if run.data.tags["sweeper.state"] == "complete"]
    assert set(killed_params) <= set(rerun_params)  # the interrupted configuration ran again
