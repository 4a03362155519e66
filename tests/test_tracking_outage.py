"""The tracking server goes down for 30 seconds mid-sweep: trials keep training, what was logged meanwhile
arrives once it is back (the client retries with backoff), nothing is lost or duplicated."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from harness import sweeper_process, trial_runs, write_spec
from services import start_mlflow, stop

pytestmark = pytest.mark.slow

# Four LoRA trials of three epochs, two at a time: they train through the outage.
CHANGES = {"data": {"path": "bundled:jitdp", "sample": 200, "split": {"kind": "time", "valid": 0.25}, "max_length": 64},
           "search": {"lr": {"loguniform": [1.0e-4, 3.0e-3]}}, "defaults.epochs": 3, "sweep.trials": 4,
           "sweep.max_concurrent": 2}


def test_sweep_survives_a_30_second_tracking_outage(tmp_path: Path) -> None:
    server = start_mlflow(tmp_path)
    uri, port = server.uri, int(server.uri.rsplit(":", 1)[1])
    try:
        with sweeper_process("run", str(write_spec(tmp_path, "outage", CHANGES)), "--tracking-uri", uri, "--json",
                             cwd=tmp_path, stdout=subprocess.PIPE) as sweep:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and not trial_runs(uri, experiment="outage"):
                time.sleep(1)  # take the server down once trials are training
            stop(server.process)
            down_at = time.monotonic()
            time.sleep(30)
            assert sweep.poll() is None, "the sweep must wait for the tracking server, not die"
            server = start_mlflow(tmp_path, port=port)
            output, _ = sweep.communicate(timeout=600)
        assert sweep.returncode == 0, output[-3000:]
        assert time.monotonic() - down_at > 30
        summary = json.loads(output.strip().splitlines()[-1])
        assert summary["trials"]["complete"] == 4
        client = MlflowClient(uri)
        runs = trial_runs(uri, summary["parent_run_id"])
        assert len(runs) == 4
        for run in runs:
            assert run.info.status == "FINISHED" and run.data.tags["sweeper.state"] == "complete"
            steps = [metric.step for metric in client.get_metric_history(run.info.run_id, "auc")]
            assert steps == [1, 2, 3]  # every evaluation arrived, none twice
            assert "best_auc" in run.data.metrics and "predictions.csv" in {
                a.path for a in client.list_artifacts(run.info.run_id)}
    finally:
        stop(server.process)
