"""The tracking server goes down for 30 seconds mid-sweep, once two trials have reported an evaluation: trials keep
training and report their next evaluations while it is down, what was logged meanwhile arrives once it is back (the
client retries with backoff), nothing is lost or duplicated."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from harness import sweeper_process, trial_runs, write_spec
from services import start_mlflow, stop
from sweeper.sweep.hold import HOLD_ENV, release, wait_for_held

pytestmark = pytest.mark.slow

OUTAGE_SECONDS = 30  # longer than one retry of the MLflow client: the backoff must carry the writes over it
# Two LoRA trials of three epochs, both at once: they train through the outage.
CHANGES = {"data": {"path": "bundled:jitdp", "sample": 200, "split": {"kind": "time", "valid": 0.25}, "max_length": 64},
           "search": {"lr": {"loguniform": [1.0e-4, 3.0e-3]}}, "defaults.epochs": 3, "sweep.trials": 2,
           "sweep.max_concurrent": 2}


def test_sweep_survives_a_30_second_tracking_outage(tmp_path: Path) -> None:
    server = start_mlflow(tmp_path)
    uri, port = server.uri, int(server.uri.rsplit(":", 1)[1])
    try:
        gate = tmp_path / "hold"
        gate.touch()  # trials wait after each evaluation: the outage starts and ends on events
        with sweeper_process("run", str(write_spec(tmp_path, "outage", CHANGES)), "--tracking-uri", uri, "--json",
                             cwd=tmp_path, stdout=subprocess.PIPE, env={HOLD_ENV: str(gate)}) as sweep:
            deadline = time.monotonic() + 400
            held = wait_for_held(gate, deadline, count=2)  # both trials have reported an evaluation, mid-run
            stop(server.process)
            down_at = time.monotonic()
            release(gate, held, deadline)
            wait_for_held(gate, deadline, count=2)  # each has trained and reported its next evaluation while down
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))  # the outage lasts its full length
            assert sweep.poll() is None, "the sweep must wait for the tracking server, not die"
            server = start_mlflow(tmp_path, port=port)
            gate.unlink()
            output, _ = sweep.communicate(timeout=600)
        assert sweep.returncode == 0, output[-3000:]
        assert time.monotonic() - down_at > OUTAGE_SECONDS
        summary = json.loads(output.strip().splitlines()[-1])
        assert summary["trials"]["complete"] == 2
        client = MlflowClient(uri)
        runs = trial_runs(uri, summary["parent_run_id"])
        assert len(runs) == 2
        for run in runs:
            assert run.info.status == "FINISHED" and run.data.tags["sweeper.state"] == "complete"
            steps = [metric.step for metric in client.get_metric_history(run.info.run_id, "auc")]
            assert steps == [1, 2, 3]  # every evaluation arrived, none twice
            assert "best_auc" in run.data.metrics and "predictions.csv" in {
                a.path for a in client.list_artifacts(run.info.run_id)}
    finally:
        stop(server.process)
