"""The tracking server goes down for 30 seconds mid-sweep: trials keep training, what was logged meanwhile
arrives once it is back (the client retries with backoff), nothing is lost or duplicated."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from services import free_port, stop, wait_for_http

pytestmark = pytest.mark.slow

SPEC = """name: outage
data: {path: bundled:jitdp, sample: 200, split: {kind: time, valid: 0.25}, max_length: 64}
defaults: {method: lora, epochs: 3, lora: {rank: 4}}
search:
  lr: {loguniform: [1.0e-4, 3.0e-3]}
sweep: {trials: 4, searcher: random, pruner: {kind: none}, max_concurrent: 2}
"""


def start_server(root: Path, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
               "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination",
               str(root / "artifacts"), "--workers", "1"]
    log = (root / "server.log").open("a")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                               env={**__import__("os").environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    wait_for_http(f"http://127.0.0.1:{port}/health", process, root / "server.log", 180)
    return process


def test_sweep_survives_a_30_second_tracking_outage(tmp_path: Path) -> None:
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start_server(tmp_path, port)
    spec = tmp_path / "outage.yaml"
    spec.write_text(SPEC)
    sweep = subprocess.Popen([sys.executable, "-m", "sweeper.cli", "run", str(spec), "--tracking-uri", uri, "--json"],
                             cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    client = MlflowClient(uri)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # take the server down once trials are training
        experiment = client.get_experiment_by_name("outage")
        if experiment and client.search_runs([experiment.experiment_id], "tags.`sweeper.role` = 'trial'"):
            break
        time.sleep(1)
    stop(server)
    down_at = time.monotonic()
    time.sleep(30)
    assert sweep.poll() is None, "the sweep must wait for the tracking server, not die"
    server = start_server(tmp_path, port)
    try:
        output, _ = sweep.communicate(timeout=600)
        assert sweep.returncode == 0, output[-3000:]
        assert time.monotonic() - down_at > 30
        summary = json.loads(output.strip().splitlines()[-1])
        assert summary["trials"]["complete"] == 4
        experiment = client.get_experiment_by_name("outage")
        runs = client.search_runs([experiment.experiment_id], "tags.`sweeper.role` = 'trial'")
        assert len(runs) == 4
        for run in runs:
            assert run.info.status == "FINISHED" and run.data.tags["sweeper.state"] == "complete"
            steps = [metric.step for metric in client.get_metric_history(run.info.run_id, "auc")]
            assert steps == [1, 2, 3]  # every evaluation arrived, none twice
            assert "best_auc" in run.data.metrics and "predictions.csv" in {
                a.path for a in client.list_artifacts(run.info.run_id)}
    finally:
        stop(server)
