"""A sweep submitted to a real multi-node Ray cluster on loopback, with S3 storage and an S3-backed MLflow.

`ray start --head` (no CPUs: it only hosts the job's driver) plus two worker nodes with one CPU
each, token authentication on; moto's S3 server over HTTP; a real `mlflow server` whose artifacts
go to that S3. The sweep is submitted with `sweeper submit` and watched with `sweeper status`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient

from harness import sweeper, trial_runs, write_spec
from services import MlflowServer, S3Server, free_port, stop_ray_nodes
from sweeper.sweep.hold import HOLD_ENV, wait_for_held
from sweeper.tracking.schema import STOP_BOUND, STOP_ERROR, Tag

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Cluster:
    """A local multi-node Ray cluster: its dashboard address, the environment that reaches it, its nodes' temp dirs
    (the head's first)."""

    address: str
    env: dict[str, str]
    node_dirs: list[Path]
    gate: Path  # the hold point's file (`sweeper.sweep.hold`): while it exists, trials wait after each evaluation


def ray(*args: str, env: dict[str, str]) -> None:
    """`ray start ...` of one node, its dashboard agent on a free port: Ray's default (52365) is taken by any other
    Ray on this machine, and a head whose agent cannot bind takes no job ("No available agent to submit job")."""
    out = subprocess.run([str(BIN / "ray"), *args, "--dashboard-agent-listen-port", str(free_port())], env=env,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, f"ray {' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"


def node_dir(name: str) -> Path:
    """A node's `--temp-dir`: short and in /tmp, since Ray's socket paths inside it must stay within the 107
    characters of a Unix socket address (a pytest temp dir under an xdist worker's folder is too long)."""
    return Path(tempfile.mkdtemp(prefix=f"rc-{name}-", dir="/tmp"))


@pytest.fixture(scope="module")
def cluster(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """`ray start --head` plus two `ray start --address` worker nodes, token auth on, S3 credentials set. Each node
    has a temp dir of its own, as on separate machines (runtime envs are per node); teardown stops the processes
    of exactly these nodes."""
    token = secrets.token_hex(32)
    gate = tmp_path_factory.mktemp("hold") / "hold"
    env = {**os.environ, **s3_server.env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
           "PATH": f"{BIN}:{os.environ['PATH']}", HOLD_ENV: str(gate)}
    port, dashboard = free_port(), free_port()
    node_dirs = [node_dir("head")]
    try:
        ray("start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "0",
            "--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
            "--temp-dir", str(node_dirs[0]), "--disable-usage-stats", env=env)
        for number in (1, 2):
            node_dirs.append(node_dir(f"node{number}"))
            ray("start", "--address", f"127.0.0.1:{port}", "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
                "--temp-dir", str(node_dirs[-1]), "--disable-usage-stats", env=env)
        yield Cluster(f"http://127.0.0.1:{dashboard}", env, node_dirs, gate)
    finally:
        stop_ray_nodes(node_dirs)
        for folder in node_dirs:
            shutil.rmtree(folder, ignore_errors=True)


def cluster_spec(folder: Path, s3: S3Server, name: str, trials: int, epochs: int) -> Path:
    """LoRA and adapter trials of 240 commits, two at a time on the worker nodes, Ray Tune's results on S3."""
    endpoint = s3.endpoint.removeprefix("http://")
    return write_spec(folder, name, {
        "data": {"path": "bundled:jitdp", "sample": 240, "split": {"kind": "time", "valid": 0.25}, "max_length": 64},
        "defaults.epochs": epochs, "defaults.adapter.bottleneck": 16, "sweep.trials": trials,
        "sweep.max_concurrent": 2, "tracking": {"storage": f"s3://{s3.bucket}/ray?endpoint_override={endpoint}&scheme=http"}})


def wait_for(cluster: Cluster, job_id: str, states: set[str], cwd: Path, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        out = sweeper("status", job_id, "--address", cluster.address, env=cluster.env, cwd=cwd)
        assert out.returncode == 0, out.stderr
        if out.stdout.strip() in states:
            return out.stdout.strip()
        time.sleep(1)
    logs = sweeper("logs", job_id, "--address", cluster.address, env=cluster.env, cwd=cwd).stdout
    raise AssertionError(f"job {job_id} not in {states} after {seconds}s; logs:\n{logs[-4000:]}")


@pytest.fixture(scope="module")
def finished_sweep(cluster: Cluster, s3_server: S3Server, mlflow_server: MlflowServer,
                   tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A 4-trial sweep submitted with `sweeper submit` and waited for with `sweeper status`."""
    folder = tmp_path_factory.mktemp("submit")
    spec = cluster_spec(folder, s3_server, "cluster-sweep", trials=4, epochs=2)
    out = sweeper("submit", str(spec), "--address", cluster.address, "--tracking-uri", mlflow_server.uri,
                  env=cluster.env, cwd=folder)
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.split()[0]
    state = wait_for(cluster, job_id, {"SUCCEEDED", "FAILED", "STOPPED"}, folder, 600)
    logs = sweeper("logs", job_id, "--address", cluster.address, env=cluster.env, cwd=folder).stdout
    assert state == "SUCCEEDED", logs[-5000:]
    again = sweeper("submit", str(spec), "--address", cluster.address, "--tracking-uri", mlflow_server.uri,
                    env=cluster.env, cwd=folder)
    assert again.returncode == 0 and "already submitted" in again.stdout  # idempotent re-submission
    return job_id, spec


def test_trials_spread_over_nodes_with_artifacts_on_s3(finished_sweep: tuple[str, Path], s3_server: S3Server,
                                                       mlflow_server: MlflowServer) -> None:
    runs = trial_runs(mlflow_server.uri, experiment="cluster-sweep")
    assert len(runs) == 4
    assert all(run.info.status == "FINISHED" for run in runs)
    assert len({run.data.tags["ray.node_id"] for run in runs}) >= 2
    keys = s3_server.object_keys("mlflow/")
    for run in runs:
        stored = [key for key in keys if f"/{run.info.run_id}/artifacts/" in key]
        assert any("/artifacts/model/" in key for key in stored), run.info.run_id
        assert any(key.endswith("predictions.csv") for key in stored)
    assert s3_server.object_keys("ray/")  # Ray Tune's results and checkpoints went to S3 too
    parent = {run.data.tags[Tag.PARENT_RUN] for run in runs}.pop()  # the stop check ran after each trial on the
    for name in (STOP_BOUND, STOP_ERROR):                            # cluster too (`when: never` logs, and goes on)
        steps = [metric.step for metric in MlflowClient(mlflow_server.uri).get_metric_history(parent, name)]
        assert steps and max(steps) == 4, (name, steps)


def test_reproduce_from_an_empty_folder_with_only_uri_and_s3(finished_sweep: tuple[str, Path], s3_server: S3Server,
                                                            mlflow_server: MlflowServer, tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("RAY_", "MLFLOW_"))}
    env |= {**s3_server.env, "MLFLOW_TRACKING_URI": mlflow_server.uri}
    best = json.loads(sweeper("best", "--experiment", "cluster-sweep", "--json", env=env, inherit=False,
                              cwd=tmp_path).stdout)
    out = sweeper("reproduce", best["runs"][0]["run_id"], "--json", env=env, inherit=False, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    outcome = json.loads(out.stdout)
    assert outcome["original"]["auc"] == outcome["reproduced"]["auc"] == best["runs"][0]["auc"]


def test_wrong_token_is_a_clear_error(cluster: Cluster, tmp_path: Path) -> None:
    env = {**cluster.env, "RAY_AUTH_TOKEN": "not-the-token"}
    out = sweeper("status", "sweeper-nothing", "--address", cluster.address, env=env, cwd=tmp_path)
    assert out.returncode == 2
    assert "refused the auth token" in out.stderr and "Traceback" not in out.stderr


def test_stop_ends_the_sweep_and_its_runs_as_killed(cluster: Cluster, s3_server: S3Server,
                                                    mlflow_server: MlflowServer, tmp_path: Path,
                                                    finished_sweep: tuple[str, Path]) -> None:
    spec = cluster_spec(tmp_path, s3_server, "cluster-stop", trials=6, epochs=3)
    cluster.gate.touch()  # trials wait after their first evaluation: the stop finds them training
    try:
        job_id = sweeper("submit", str(spec), "--address", cluster.address, "--tracking-uri", mlflow_server.uri,
                         env=cluster.env, cwd=tmp_path).stdout.split()[0]
        wait_for_held(cluster.gate, time.monotonic() + 300)
        out = sweeper("stop", job_id, "--address", cluster.address, env=cluster.env, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
    finally:
        cluster.gate.unlink(missing_ok=True)
    assert wait_for(cluster, job_id, {"STOPPED", "FAILED", "SUCCEEDED"}, tmp_path, 120) == "STOPPED"
    runs = trial_runs(mlflow_server.uri, experiment="cluster-stop")
    assert runs and all(run.info.status != "RUNNING" for run in runs), [(r.info.run_name, r.info.status) for r in runs]
    assert any(run.info.status == "KILLED" for run in runs)


def test_no_secret_in_mlflow_store_or_bucket(finished_sweep: tuple[str, Path], s3_server: S3Server,
                                             mlflow_server: MlflowServer) -> None:
    secret = s3_server.env["AWS_SECRET_ACCESS_KEY"].encode()
    for path in mlflow_server.root.rglob("*"):
        if path.is_file():
            assert secret not in path.read_bytes(), path
    client = s3_server.client()
    for key in s3_server.object_keys():
        assert secret not in client.get_object(Bucket=s3_server.bucket, Key=key)["Body"].read(), key


def test_worker_lost_mid_trial_resumes_from_its_checkpoint(cluster: Cluster, s3_server: S3Server,
                                                           mlflow_server: MlflowServer, tmp_path: Path,
                                                           finished_sweep: tuple[str, Path]) -> None:
    """SIGKILL of a worker node's raylet while both nodes' trials are mid-run (held after their first evaluation):
    its trial resumes on the other node.

    Last in this module: the cluster has one worker node left afterwards.
    """
    spec = cluster_spec(tmp_path, s3_server, "cluster-loss", trials=2, epochs=3)
    cluster.gate.touch()  # both trials wait after their first evaluation: the kill finds them mid-run
    try:
        job_id = sweeper("submit", str(spec), "--address", cluster.address, "--tracking-uri", mlflow_server.uri,
                         env=cluster.env, cwd=tmp_path).stdout.split()[0]
        wait_for_held(cluster.gate, time.monotonic() + 300, count=2)
        victim = cluster.node_dirs[2]
        killed = subprocess.run(["pkill", "-9", "-f", f"raylet.*{victim}"], capture_output=True)
        assert killed.returncode == 0, "no raylet of the second worker node found"
    finally:
        cluster.gate.unlink(missing_ok=True)
    state = wait_for(cluster, job_id, {"SUCCEEDED", "FAILED", "STOPPED"}, tmp_path, 600)
    logs = sweeper("logs", job_id, "--address", cluster.address, env=cluster.env, cwd=tmp_path).stdout
    assert state == "SUCCEEDED", logs[-4000:]
    runs = trial_runs(mlflow_server.uri, experiment="cluster-loss")
    assert len(runs) == 2  # exactly one run per trial, also for the one that was retried
    retried = [run for run in runs if run.data.tags.get("sweeper.retries") == "1"]
    assert len(retried) == 1 and all(run.info.status == "FINISHED" for run in runs)
    steps = [metric.step for metric in MlflowClient(mlflow_server.uri).get_metric_history(retried[0].info.run_id, "epoch")]
    assert steps == [1, 2, 3]  # the metrics continue from the checkpoint: each epoch once, in order
