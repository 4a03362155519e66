"""Real services for tests and benchmarks: an S3-compatible server (moto) and an MLflow tracking server.

The test fixtures (`conftest.py`) and the benchmark scripts (`bench/common.py`) both start them from here.
Everything binds to 127.0.0.1 on a free port; `stop` ends a server with every process it spawned.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import psutil

SERVER_START_SECONDS = 180  # `mlflow server` takes tens of seconds to start on two busy cores


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, log: Path, seconds: float) -> None:
    """Poll `url` until it answers 200; fail with the server's log if it dies or never answers."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"server did not answer {url} in {seconds}s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen, grace: float = 20) -> None:
    """Stop a server started with start_new_session=True and every process it spawned (its process group): SIGTERM,
    then SIGKILL if it lingers. A server already stopped is left alone."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=grace)
    except ProcessLookupError:
        process.wait(timeout=grace)


def stop_tree(process: subprocess.Popen) -> None:
    """Stop a process and every process under it (`ray start --block` and its node, say)."""
    try:
        parent = psutil.Process(process.pid)
        terminate([parent, *parent.children(recursive=True)])
    except psutil.NoSuchProcess:
        pass
    process.wait(timeout=20)


def stop_ray_nodes(temp_dirs: list[Path]) -> None:
    """Stop the Ray nodes started with these `--temp-dir`s: every process whose command line names one (GCS, raylet,
    dashboard, log monitor, agents) and everything under them (workers, job drivers). Never `ray stop`: it ends every
    Ray on the machine, other people's too."""
    names = [str(folder) for folder in temp_dirs]
    found = []
    for process in psutil.process_iter(["cmdline"]):
        command = " ".join(process.info["cmdline"] or [])
        if any(name in command for name in names):
            try:
                found += [process, *process.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
    terminate(found)


def terminate(processes: list[psutil.Process], grace: float = 10) -> None:
    """SIGTERM each process, then SIGKILL those still alive after `grace` seconds."""
    for process in processes:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(processes, timeout=grace)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=grace)


@dataclass(frozen=True)
class S3Server:
    """A moto S3 server: its endpoint, bucket and the credentials clients must use."""

    endpoint: str
    bucket: str
    env: dict[str, str]
    process: subprocess.Popen = field(repr=False, compare=False)

    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"])

    def object_keys(self, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


@dataclass(frozen=True)
class MlflowServer:
    """A tracking server: its URI, the folder of its SQLite backend store, and its process."""

    uri: str
    root: Path
    process: subprocess.Popen = field(repr=False, compare=False)


def start_s3(root: Path, bucket: str = "sweeper-test") -> S3Server:
    """moto's S3 server over HTTP on localhost with one bucket; a fresh secret key each time."""
    port = free_port()
    log = root / "s3-server.log"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "sweeper-test-key", "AWS_SECRET_ACCESS_KEY": "s3cret-" + secrets.token_hex(16),
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}
    server = S3Server(endpoint, bucket, env, process)
    try:
        wait_for_http(f"{endpoint}/moto-api/", process, log, 60)
        server.client().create_bucket(Bucket=bucket)
    except BaseException:
        stop(process)
        raise
    return server


def start_mlflow(root: Path, s3: S3Server | None = None, extra_args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None, port: int | None = None) -> MlflowServer:
    """A real `mlflow server` on localhost (a free port, or `port`: a server started again on the same store) with
    a SQLite backend in `root`; artifacts proxied to `s3` when given (clients then need no S3 credentials), else
    kept in `root`. No background job workers: two cores are few."""
    port = port or free_port()
    log = root / "mlflow-server.log"
    artifacts = f"s3://{s3.bucket}/mlflow" if s3 else str(root / "artifacts")
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
               "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", artifacts,
               "--workers", "1", *extra_args]
    server_env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {})}
    if s3 is not None:
        server_env |= {**s3.env, "MLFLOW_S3_ENDPOINT_URL": s3.endpoint}
    with log.open("a") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=server_env, cwd=root,
                                   start_new_session=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", process, log, SERVER_START_SECONDS)
    except BaseException:
        stop(process)
        raise
    return MlflowServer(f"http://127.0.0.1:{port}", root, process)
