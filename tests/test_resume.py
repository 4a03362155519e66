"""Resuming, bit for bit: a trial interrupted at an evaluation and resumed from that evaluation's checkpoint ends
exactly as the same trial run without interruption; a driver killed mid-sweep (SIGKILL), then `sweeper resume`:
the same sweep carries on to the spec's count."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType
from safetensors.torch import load_file

from harness import last_json, small_trial, sweeper, sweeper_process, trial_runs, write_spec
from sweeper.artifacts import METRICS_FILE, MODEL_DIR, PREDICTIONS_FILE
from sweeper.config import TrialConfig
from sweeper.sweep.hold import HOLD_ENV, release, wait_for_held
from sweeper.recipe import Evaluation, TrialResult
from sweeper.trial import run_trial

pytestmark = pytest.mark.slow

# Four LoRA trials of two epochs, one at a time; the test kills the driver while the third is held mid-run.
CHANGES = {"data": {"path": "bundled:jitdp", "sample": 200, "split": {"kind": "time", "valid": 0.25}, "max_length": 64},
           "search": {"lr": {"loguniform": [1.0e-4, 3.0e-3]}}, "defaults.epochs": 2, "sweep.trials": 4}


class Interrupted(Exception):
    """Stands for the worker dying right after an evaluation's checkpoint was saved."""


def interrupted_at(config: TrialConfig, evaluations: int, folder: Path) -> list[Path]:
    """Run `config` until its `evaluations`-th evaluation, saving each evaluation's checkpoint, and stop there."""
    checkpoints = [folder / f"checkpoint-{index}" for index in range(1, evaluations + 1)]

    def report(done: Evaluation) -> None:
        done.save(checkpoints[done.index - 1])
        if done.index == evaluations:
            raise Interrupted
    with pytest.raises(Interrupted):
        run_trial(config, report=report)
    return checkpoints


def assert_same_trial(resumed: TrialResult, alone: TrialResult) -> None:
    """Every metric, every evaluation, every prediction and every trained weight the same, to the last bit."""
    assert resumed.metrics == alone.metrics
    assert resumed.history == alone.history
    assert resumed.output_dir and alone.output_dir
    assert (resumed.output_dir / PREDICTIONS_FILE).read_bytes() == (alone.output_dir / PREDICTIONS_FILE).read_bytes()
    summaries = [json.loads((result.output_dir / METRICS_FILE).read_text()) for result in (resumed, alone)]
    assert summaries[0]["metrics"] == summaries[1]["metrics"] and summaries[0]["history"] == summaries[1]["history"]
    weights = [{path.name: load_file(path) for path in (result.output_dir / MODEL_DIR).rglob("*.safetensors")}
               for result in (resumed, alone)]
    assert weights[0].keys() == weights[1].keys() and weights[0]
    for name, tensors in weights[0].items():
        assert all(tensors[key].equal(weights[1][name][key]) for key in tensors), name


def test_trial_resumed_at_an_evaluation_ends_as_if_never_stopped(tmp_path: Path) -> None:
    """LoRA with dropout, 2 epochs of 6 steps, an evaluation every 4 steps too: interrupted at the mid-epoch
    evaluation (step 4) and at the first epoch's end (step 6), each resumed run equals the uninterrupted one."""
    config = small_trial("lora", **{"data.sample": 120, "data.max_length": 32, "epochs": 2, "eval_every_steps": 4})
    alone = run_trial(config, tmp_path / "alone")
    assert [round(row["epoch"], 4) for row in alone.history] == [0.6667, 1.0, 1.3333, 2.0]  # where each evaluation fell
    for checkpoint, where in zip(interrupted_at(config, 2, tmp_path), ("mid-epoch", "epoch end")):
        resumed = run_trial(config, tmp_path / f"resumed-{checkpoint.name}", resume_from=checkpoint)
        assert len(resumed.history) == 4, where
        assert_same_trial(resumed, alone)


def test_killed_driver_resumes_the_same_sweep(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "resumable", CHANGES)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    gate = tmp_path / "hold"
    gate.touch()  # the sweep goes on evaluation by evaluation, as the test releases it
    with (tmp_path / "first.log").open("w") as log, \
            sweeper_process("run", str(spec), "--sweep-id", "resumable-1", "--tracking-uri", uri, cwd=tmp_path,
                            stdout=log, env={HOLD_ENV: str(gate)}) as driver:
        deadline = time.monotonic() + 400
        while True:  # kill it once two trials are done and a third is held mid-run
            try:
                held = wait_for_held(gate, deadline)
            except TimeoutError:
                pytest.fail(f"no trial held:\n{(tmp_path / 'first.log').read_text()[-3000:]}")
            states = [run.data.tags.get("sweeper.state") for run in trial_runs(uri, experiment="resumable")]
            if states.count("complete") >= 2:
                break
            release(gate, held, deadline)
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    gate.unlink()
    before = {run.info.run_id: run for run in trial_runs(uri, experiment="resumable")}
    assert any(run.info.status == "RUNNING" for run in before.values())  # the crash left an orphan

    summary = last_json(sweeper("resume", "resumable-1", "--tracking-uri", uri, "--json", cwd=tmp_path, timeout=600))

    runs = trial_runs(uri, experiment="resumable")
    states = Counter(run.data.tags["sweeper.state"] for run in runs)
    assert states["complete"] + states["pruned"] + states["failed"] == 4  # the spec's count
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
