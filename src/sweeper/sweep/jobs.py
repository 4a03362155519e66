"""Sweeps as Ray jobs on a cluster: submit, status, logs, stop (the Ray Jobs API).

The job's driver runs `sweeper run` on the cluster, with a runtime environment that carries the
spec (working_dir) and this package (py_modules). The submission id is derived from the spec's
name and text, so submitting the same spec twice finds the job already there instead of
starting a second sweep. Ray's token authentication is sent as a Bearer header: the token comes
from RAY_AUTH_TOKEN, the file in RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token.

No credential ever travels in a job's runtime environment: Ray shows a job's `env_vars` to anyone who lists jobs
(`ray job list`, the dashboard) and keeps them in the cluster's job table. The job gets only the variables in
FORWARDED_ENV (where things are, never secrets) and `job_env` refuses any name that looks like a credential and
any URL with a password in it. The cluster's nodes hold the MLflow credentials themselves (a compose secret, a
Kubernetes Secret, the node's environment; see cluster/README.md), and the job's driver inherits them from its node.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sweeper.errors import SweeperError
from sweeper.spec import load_spec

# Where the cluster finds MLflow and S3, from the submitting shell. Never credentials: see job_env.
NO_AGENT = "No available agent to submit job"  # Ray's answer while a new head's job agent is starting
AGENT_WAIT_SECONDS = 120
AGENT_POLL_SECONDS = 2.0
FORWARDED_ENV = ("MLFLOW_TRACKING_URI", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION")
# Names of variables that hold credentials: never put in a job's runtime environment.
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|CREDENTIAL|ACCESS_KEY|PRIVATE_KEY|AUTH", re.IGNORECASE)


def auth_token() -> str | None:
    """Ray's auth token from the environment or the token file, if any."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    return path.read_text().strip() if path.is_file() else None


def client(address: str):  # -> JobSubmissionClient (imported lazily: it pulls in much of Ray)
    """A Jobs API client for the dashboard at `address`, authenticated; clear errors if it cannot connect."""
    from ray.job_submission import JobSubmissionClient

    token = auth_token()
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        return JobSubmissionClient(address, headers=headers)
    except Exception as error:  # Ray raises bare exceptions (ConnectionError, RuntimeError) here
        raise SweeperError(describe_failure(address, error)) from None


def describe_failure(address: str, error: Exception) -> str:
    """One line for a failed call to the cluster, naming the likely fix."""
    text = str(error)
    if "401" in text or "403" in text or "uthenticat" in text:
        return (f"the Ray cluster at {address} refused the auth token: set RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) "
                "to the cluster's token (`ray get-auth-token` on the head node)")
    return f"cannot reach the Ray cluster at {address}: {text.splitlines()[0] if text else type(error).__name__}"


def job_env(tracking_uri: str | None = None) -> dict[str, str]:
    """The job's environment variables: FORWARDED_ENV from this shell, the tracking URI, no credential.

    MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN, AWS keys and Ray's token stay here: the nodes have their own.
    """
    env = {name: os.environ[name] for name in FORWARDED_ENV if os.environ.get(name)}
    env["RAY_JOB_STOP_WAIT_TIME_S"] = "60"  # time for the driver to end its MLflow runs as KILLED
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    for name, value in env.items():
        if SECRET_NAME.search(name):  # a guard for whoever extends FORWARDED_ENV
            raise SweeperError(f"{name} would travel in the job's runtime environment, which anyone who lists jobs "
                               "can read: give the cluster's nodes their credentials instead (cluster/README.md)")
        if has_password(value):
            raise SweeperError(f"{name} holds a password, and would travel in the job's runtime environment, which "
                               "anyone who lists jobs can read: use a URL without credentials; the cluster's nodes "
                               "hold MLFLOW_TRACKING_USERNAME/PASSWORD themselves (cluster/README.md)")
    return env


def has_password(value: str) -> bool:
    """Whether a URL carries a password (scheme://user:password@host)."""
    try:
        return "://" in value and urlsplit(value).password is not None
    except ValueError:
        return False


def submission_id(spec_name: str, spec_text: str) -> str:
    """Stable id for a spec: re-submitting the same spec is idempotent."""
    return f"sweeper-{spec_name}-{hashlib.sha256(spec_text.encode()).hexdigest()[:10]}"


def submit(spec_path: str, address: str, tracking_uri: str | None = None) -> tuple[str, bool]:
    """Submit a sweep as a Ray job; returns (submission id, whether it was newly submitted)."""
    import sweeper

    spec = load_spec(spec_path)
    text = Path(spec_path).read_text(encoding="utf-8")
    job_id = submission_id(spec.name, text)
    if spec.tracking.uri and has_password(spec.tracking.uri):
        raise SweeperError(f"{spec_path}: field 'tracking.uri': holds a password (the spec travels with the job and "
                           "is logged to MLflow): leave the credentials to the cluster's nodes (cluster/README.md)")
    env = job_env(tracking_uri)
    jobs = client(address)
    try:
        jobs.get_job_info(job_id)
        return job_id, False
    except RuntimeError:
        pass  # not submitted yet
    with tempfile.TemporaryDirectory() as folder:
        shutil.copy(spec_path, Path(folder) / "spec.yaml")
        runtime_env = {"working_dir": folder, "py_modules": [str(Path(sweeper.__file__).parent)], "env_vars": env}
        submit_when_ready(jobs, address, entrypoint=f"python -m sweeper.cli run spec.yaml --sweep-id {job_id}",
                          submission_id=job_id, runtime_env=runtime_env)
    return job_id, True


def submit_when_ready(jobs: Any, address: str, **job: Any) -> None:
    """Submit, waiting while the cluster says it has no job agent yet: a head node's Jobs API answers seconds before
    its agent takes jobs ("No available agent to submit job, please try again later"), so a sweep submitted right
    after `ray start` would fail for nothing. Up to `AGENT_WAIT_SECONDS`; other errors at once."""
    deadline = time.monotonic() + AGENT_WAIT_SECONDS
    while True:
        try:
            jobs.submit_job(**job)
            return
        except Exception as error:  # Ray raises bare exceptions here
            if NO_AGENT not in str(error) or time.monotonic() > deadline:
                raise SweeperError(describe_failure(address, error)) from None
            print(f"the cluster at {address} has no job agent ready yet: waiting (up to {AGENT_WAIT_SECONDS} s)",
                  file=sys.stderr, flush=True)
            time.sleep(AGENT_POLL_SECONDS)


def status(job_id: str, address: str) -> str:
    """PENDING, RUNNING, STOPPED, SUCCEEDED or FAILED."""
    try:
        return str(client(address).get_job_status(job_id).value)
    except RuntimeError as error:
        raise SweeperError(f"no job {job_id} at {address}: {error}") from None


def logs(job_id: str, address: str, follow: bool = False) -> Iterator[str]:
    """The job's driver output: all of it, or streamed until the job ends."""
    import asyncio

    jobs = client(address)
    if not follow:
        yield jobs.get_job_logs(job_id)
        return
    stream = jobs.tail_job_logs(job_id)
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                yield loop.run_until_complete(stream.__anext__())
            except StopAsyncIteration:
                return
    finally:
        loop.close()


def stop(job_id: str, address: str) -> bool:
    """Ask the job to stop; its driver ends open MLflow runs as KILLED. False if it had already ended."""
    try:
        return bool(client(address).stop_job(job_id))
    except RuntimeError as error:
        raise SweeperError(f"cannot stop job {job_id} at {address}: {error}") from None
