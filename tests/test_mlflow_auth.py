"""Sweeps against an MLflow server with its built-in authentication, locally and as a Ray job.

A real `mlflow server --app-name basic-auth`, started the way the compose stack starts it (docker/mlflow-auth.py
writes basic_auth.ini from secret files, `add-user` creates the ordinary user `sweeper`), and a real one-node Ray
cluster (`ray start --head`, token auth on) whose node holds the sweeper user's credentials in its own environment.
What it shows:

- `sweeper run` works with MLFLOW_TRACKING_USERNAME/PASSWORD from the environment (MLflow's client reads them);
  without them, or with a wrong password, it is one error line, exit code 2, no traceback, no secret;
  `sweeper reproduce` of one of its runs works with them and is one line without; so is `sweeper ui`.
- `sweeper submit` from a shell holding other MLflow credentials (the admin's): the job logs as the node's user,
  and no credential is in `ray job list`, the job's logs or its runtime environment.
- No credential is in any run's params, tags or artifacts (downloaded and scanned), in the server's stores, in
  Ray Tune's results, or in what the commands printed.
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

from harness import sweeper, write_spec
from services import SERVER_START_SECONDS, free_port, stop, stop_tree, wait_for_http

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
MLFLOW_AUTH = ROOT / "docker" / "mlflow-auth.py"
BIN = Path(sys.executable).parent
CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


@dataclass(frozen=True)
class AuthServer:
    """An MLflow server with basic auth: its URI, folders, and the secrets it was given."""

    uri: str
    root: Path
    admin_password: str
    sweeper_password: str
    flask_key: str

    @property
    def secrets(self) -> dict[str, str]:
        return {"admin password": self.admin_password, "sweeper password": self.sweeper_password,
                "Flask secret key": self.flask_key}

    def env(self, user: str | None = "sweeper", password: str | None = None) -> dict[str, str]:
        """This process's environment without MLflow credentials, then `user` with its password (or `password`)."""
        env = {key: value for key, value in os.environ.items() if key not in CREDENTIALS and not key.startswith("RAY_")}
        env["MLFLOW_TRACKING_URI"] = self.uri
        if user:
            env["MLFLOW_TRACKING_USERNAME"] = user
            env["MLFLOW_TRACKING_PASSWORD"] = password or (self.admin_password if user == "admin" else self.sweeper_password)
        return env


def secret_file(path: Path, value: str) -> str:
    path.write_text(value + "\n")
    path.chmod(0o600)
    return str(path)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """`mlflow server --app-name basic-auth` through docker/mlflow-auth.py, then `add-user` for `sweeper`."""
    root = tmp_path_factory.mktemp("mlflow-auth")
    (root / "secrets").mkdir(mode=0o700)
    values = {name: secrets.token_urlsafe(24) for name in ("admin", "sweeper", "key")}
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env |= {"MLFLOW_AUTH_ADMIN_PASSWORD_FILE": secret_file(root / "secrets" / "admin_password", values["admin"]),
            "MLFLOW_FLASK_SERVER_SECRET_KEY_FILE": secret_file(root / "secrets" / "flask_secret_key", values["key"]),
            "SWEEPER_MLFLOW_PASSWORD_FILE": secret_file(root / "secrets" / "sweeper_password", values["sweeper"]),
            "MLFLOW_AUTH_DATABASE_URI": f"sqlite:///{root / 'users.db'}",
            "MLFLOW_AUTH_CONFIG_PATH": str(root / "config" / "basic_auth.ini"),
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no background job workers: two cores are few
    command = [sys.executable, str(MLFLOW_AUTH), "run", "--", sys.executable, "-m", "mlflow", "server",
               "--app-name", "basic-auth", "--host", "127.0.0.1", "--port", str(port),
               "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
               "--artifacts-destination", str(root / "artifacts"), "--workers", "1"]
    log = root / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        uri = f"http://127.0.0.1:{port}"
        wait_for_http(f"{uri}/health", process, log, SERVER_START_SECONDS)
        added = subprocess.run([sys.executable, str(MLFLOW_AUTH), "add-user", "--uri", uri, "--wait", "60"],
                               env=env, capture_output=True, text=True, timeout=180)
        assert added.returncode == 0 and "created MLflow user sweeper" in added.stdout, added.stderr[-2000:]
        yield AuthServer(uri, root, values["admin"], values["sweeper"], values["key"])
    finally:
        stop(process)


@dataclass(frozen=True)
class Cluster:
    """A one-node Ray cluster: GCS and dashboard addresses, the environment that reaches it, its temp dir."""

    gcs: str
    dashboard: str
    token: str
    temp_dir: Path

    def env(self, base: dict[str, str]) -> dict[str, str]:
        return {**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token, "PATH": f"{BIN}:{os.environ['PATH']}"}


@pytest.fixture(scope="module")
def cluster(server: AuthServer) -> Iterator[Cluster]:
    """`ray start --head --block` with 2 CPUs and token auth; the node's own environment holds the MLflow user
    `sweeper` and its password, as a compose secret or a Kubernetes Secret gives them to a real head node."""
    token = secrets.token_hex(32)
    temp_dir = Path(tempfile.mkdtemp(prefix="ray-auth-", dir="/tmp"))  # short: Ray's socket paths have a limit
    cluster = Cluster("", "", token, temp_dir)
    port, dashboard = free_port(), free_port()
    node_env = cluster.env(server.env("sweeper"))
    node_env.pop("MLFLOW_TRACKING_URI")  # each job names its server (sweeper submit --tracking-uri)
    command = [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
               "--num-cpus", "2", "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
               "--dashboard-port", str(dashboard), "--temp-dir", str(temp_dir), "--disable-usage-stats",
               "--dashboard-agent-listen-port", str(free_port())]  # not the default, which another Ray may hold
    log = temp_dir / "ray-start.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=node_env, start_new_session=True)
    try:
        from ray.job_submission import JobSubmissionClient

        deadline = time.monotonic() + 180
        while True:  # the Jobs API answers before the node's agent takes jobs: wait until a job runs
            assert process.poll() is None, f"ray start exited:\n{log.read_text()[-3000:]}"
            try:
                jobs = JobSubmissionClient(f"http://127.0.0.1:{dashboard}", headers={"Authorization": f"Bearer {token}"})
                probe = jobs.submit_job(entrypoint="true")
                break
            except Exception:
                assert time.monotonic() < deadline, f"Ray never took a job:\n{log.read_text()[-3000:]}"
                time.sleep(2)
        while not jobs.get_job_status(probe).is_terminal():
            assert time.monotonic() < deadline, "Ray's probe job never ended"
            time.sleep(1)
        yield Cluster(f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard}", token, temp_dir)
    finally:
        stop_tree(process)
        shutil.rmtree(temp_dir, ignore_errors=True)


def auth_spec(folder: Path, name: str) -> Path:
    """Two trials (LoRA, adapter) at once: a grid, so both methods run."""
    return write_spec(folder, name, {"defaults.adapter.bottleneck": 16, "sweep.searcher": "grid",
                                     "sweep.max_concurrent": 2})


def leaks(text: str | bytes, server: AuthServer, cluster: Cluster | None = None) -> list[str]:
    """Which secrets appear in `text`."""
    found = {**server.secrets, **({"Ray token": cluster.token} if cluster else {})}
    data = text.encode() if isinstance(text, str) else text
    return [name for name, value in found.items() if value.encode() in data]


def assert_one_error_line(out: subprocess.CompletedProcess, server: AuthServer, expected: str) -> None:
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2, out.stdout + out.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert not leaks(out.stdout + out.stderr, server)


@pytest.fixture(scope="module")
def local_sweep(server: AuthServer, cluster: Cluster, submitted, tmp_path_factory: pytest.TempPathFactory):
    """`sweeper run` of a 2-trial spec with the user's credentials from the environment; trials on the cluster
    (beside the submitted job's)."""
    folder = tmp_path_factory.mktemp("local-sweep")
    env = {**cluster.env(server.env("sweeper")), "RAY_ADDRESS": cluster.gcs}
    out = sweeper("run", str(auth_spec(folder, "auth-local")), "--json", env=env, inherit=False, cwd=folder)
    return out, folder


def test_sweep_runs_with_credentials_from_the_environment(local_sweep, server: AuthServer) -> None:
    out, _ = local_sweep
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["trials"] == {"complete": 2, "pruned": 0, "failed": 0, "killed": 0}
    assert not leaks(out.stdout + out.stderr, server)


def test_sweep_without_or_with_wrong_credentials_is_one_line(server: AuthServer, tmp_path: Path) -> None:
    spec = str(auth_spec(tmp_path, "auth-refused"))
    missing = sweeper("run", spec, env=server.env(None), inherit=False, cwd=tmp_path)
    assert_one_error_line(missing, server, f"the MLflow server at {server.uri} refused the credentials (HTTP 401)")
    assert "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in missing.stderr and "none of them is set" in missing.stderr
    wrong = sweeper("run", spec, env=server.env("sweeper", "not-the-password"), inherit=False,
                    cwd=tmp_path)
    assert_one_error_line(wrong, server, "refused the credentials (HTTP 401)")
    assert "are set but not accepted" in wrong.stderr and "not-the-password" not in wrong.stderr
    assert not (tmp_path / "results").exists(), "nothing may start before the credentials are accepted"


def test_reproduce_with_credentials_and_without(local_sweep, server: AuthServer, tmp_path: Path) -> None:
    out, _ = local_sweep
    run_id = json.loads(out.stdout.strip().splitlines()[-1])["best_run_id"]
    again = sweeper("reproduce", run_id, "--json", env=server.env("sweeper"), inherit=False, cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    outcome = json.loads(again.stdout.strip().splitlines()[-1])
    assert outcome["original"]["auc"] == outcome["reproduced"]["auc"]
    assert not leaks(again.stdout + again.stderr, server)
    refused = sweeper("reproduce", run_id, env=server.env("sweeper", "wrong-password-123"), inherit=False,
                      cwd=tmp_path)
    assert_one_error_line(refused, server, "refused the credentials (HTTP 401)")


def test_ui_checks_the_credentials(server: AuthServer, tmp_path: Path) -> None:
    ok = sweeper("ui", env=server.env("sweeper"), inherit=False, cwd=tmp_path, timeout=120)
    assert ok.returncode == 0 and f"{server.uri} serves its own UI" in ok.stdout and "log in as sweeper" in ok.stdout
    refused = sweeper("ui", env=server.env(None), inherit=False, cwd=tmp_path, timeout=120)
    assert_one_error_line(refused, server, "refused the credentials (HTTP 401)")


@dataclass(frozen=True)
class SubmittedJob:
    job_id: str
    submitted: subprocess.CompletedProcess
    shell: dict[str, str]
    folder: Path


@pytest.fixture(scope="module")
def submitted(server: AuthServer, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> SubmittedJob:
    """`sweeper submit` of the spec from a shell that holds the admin's MLflow credentials (not the node's).
    Submitted before the local sweep starts, so that the two share the cluster and the wait."""
    folder = tmp_path_factory.mktemp("job")
    shell = cluster.env(server.env("admin"))
    out = sweeper("submit", str(auth_spec(folder, "auth-job")), "--address", cluster.dashboard,
                  "--tracking-uri", server.uri, env=shell, inherit=False, cwd=folder, timeout=180)
    assert out.returncode == 0, out.stderr
    return SubmittedJob(out.stdout.split()[0], out, shell, folder)


@pytest.fixture(scope="module")
def job(submitted: SubmittedJob, cluster: Cluster) -> SubmittedJob:
    """The submitted job, once it has ended."""
    from ray.job_submission import JobSubmissionClient

    job_id = submitted.job_id

    jobs = JobSubmissionClient(cluster.dashboard, headers={"Authorization": f"Bearer {cluster.token}"})
    deadline = time.monotonic() + 480
    while not jobs.get_job_status(job_id).is_terminal():
        assert time.monotonic() < deadline, jobs.get_job_logs(job_id)[-3000:]
        time.sleep(2)
    return submitted


def test_submitted_sweep_logs_with_the_nodes_credentials_and_shows_none(server: AuthServer, cluster: Cluster,
                                                                       job: SubmittedJob) -> None:
    """The submitting shell holds the admin's credentials; the job must not carry them (nor any other): it logs
    to MLflow as the node's user `sweeper`, which therefore manages the experiment it created."""
    from mlflow.server.auth.client import AuthServiceClient
    from ray.job_submission import JobStatus, JobSubmissionClient

    job_id, submitted, shell, tmp_path = job.job_id, job.submitted, job.shell, job.folder
    assert "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD stay on this machine" in submitted.stderr

    jobs = JobSubmissionClient(cluster.dashboard, headers={"Authorization": f"Bearer {cluster.token}"})
    logs = sweeper("logs", job_id, "--address", cluster.dashboard, env=shell, inherit=False, cwd=tmp_path,
                   timeout=120)
    assert jobs.get_job_status(job_id) == JobStatus.SUCCEEDED, logs.stdout[-4000:]
    assert logs.returncode == 0 and "2 complete" in logs.stdout

    info = jobs.get_job_info(job_id)
    env_vars = (info.runtime_env or {}).get("env_vars", {})
    assert not set(env_vars) & set(CREDENTIALS), env_vars.keys()
    listed = subprocess.run([str(BIN / "ray"), "job", "list", "--address", cluster.dashboard], env=shell,
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and job_id in listed.stdout, listed.stderr[-2000:]
    for what, text in (("ray job list", listed.stdout + listed.stderr), ("sweeper logs", logs.stdout + logs.stderr),
                       ("the job's runtime_env", json.dumps(info.runtime_env)), ("the job's info", repr(info)),
                       ("sweeper submit", submitted.stdout + submitted.stderr)):
        assert not leaks(text, server, cluster), f"{what} shows {leaks(text, server, cluster)}"
    for path in (tmp_path / "results").rglob("*"):  # Ray Tune's results of the job's trials
        if path.is_file():
            assert not leaks(path.read_bytes(), server, cluster), path

    os.environ.update({"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": server.admin_password})
    try:
        from mlflow import MlflowClient

        experiment = MlflowClient(server.uri).get_experiment_by_name("auth-job")
        permission = AuthServiceClient(server.uri).get_user_permission("sweeper", "experiment", experiment.experiment_id)
        assert permission.permission == "MANAGE", "the job did not log as the node's user (sweeper creates, admin reads)"
    finally:
        for name in CREDENTIALS:
            os.environ.pop(name, None)


def test_no_credential_in_runs_stores_or_outputs(local_sweep, job: SubmittedJob, server: AuthServer,
                                                 cluster: Cluster, tmp_path: Path) -> None:
    """Every run's params, tags and metric names, every artifact (downloaded through the server), the server's
    stores and Ray Tune's results: none holds a secret. Last in the module: after both sweeps have ended."""
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts
    from mlflow.entities import ViewType

    os.environ.update({"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": server.admin_password,
                       "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
    try:
        client = MlflowClient(server.uri)
        experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
        runs = client.search_runs(experiments, "", ViewType.ALL, max_results=1000)
        names = {client.get_experiment(run.info.experiment_id).name for run in runs}
        assert len(runs) >= 2 * 3 and {"auth-local", "auth-job"} <= names, "expected both sweeps' runs"
        downloaded = 0
        for run in runs:
            text = json.dumps([run.data.params, run.data.tags, sorted(run.data.metrics)])
            assert not leaks(text, server, cluster), f"run {run.info.run_id}'s params/tags"
            folder = Path(download_artifacts(run_id=run.info.run_id, dst_path=str(tmp_path / run.info.run_id),
                                             tracking_uri=server.uri))
            for path in folder.rglob("*"):
                if path.is_file():
                    assert not leaks(path.read_bytes(), server, cluster), path
                    downloaded += 1
        assert downloaded >= 6, "expected spec, config, predictions and models among the artifacts"
    finally:
        for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            os.environ.pop(name, None)
    out, folder = local_sweep
    stores = [server.root / "mlflow.db", server.root / "artifacts", folder / "results", job.folder / "results"]
    for store in stores:
        for path in [store] if store.is_file() else store.rglob("*"):
            if path.is_file():
                assert not leaks(path.read_bytes(), server, cluster), path
    assert not leaks(out.stdout + out.stderr, server, cluster)
