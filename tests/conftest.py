"""Shared fixtures, started once per test run: a real S3-compatible server (moto, over HTTP) and a
real `mlflow server` process that keeps its artifacts in that S3 (see `services.py`)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from services import MlflowServer, S3Server, start_mlflow, start_s3, stop

# `precision: auto` (the default) reads the CPU's flags: none here, so every test runs at fp32 whatever the CPU
# (a machine with AMX would run bf16). Subprocesses and Ray workers inherit it. Tests of `auto` pass flags in.
os.environ["SWEEPER_CPU_FLAGS"] = ""


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's S3 server over HTTP on localhost with one bucket; a fresh secret key per run."""
    server = start_s3(tmp_path_factory.mktemp("s3-server"))
    try:
        yield server
    finally:
        stop(server.process)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> Iterator[MlflowServer]:
    """A real MLflow tracking server on localhost: SQLite backend, artifacts proxied to the S3 server."""
    server = start_mlflow(tmp_path_factory.mktemp("mlflow-server"), s3_server)
    try:
        yield server
    finally:
        stop(server.process)


@pytest.fixture(scope="session", autouse=True)
def shared_ray() -> Iterator[None]:
    """The Ray head that `sweeper` commands join (`harness.SharedRay`, started at first use), stopped at the end."""
    from harness import SharedRay  # imported here: its snapshot of the environment must include the line above

    yield
    SharedRay.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """With `-n` (pytest-xdist, `--dist loadgroup`): each module's tests go to one worker, so a module's fixtures
    (a sweep, a cluster, a server) start once; the modules that use the session's tiny sweep (they import
    `tiny_sweep`) go to one worker together, so that the sweep runs once per test run."""
    for item in items:
        module = getattr(item, "module", None)
        shares_tiny_sweep = module is not None and hasattr(module, "tiny_sweep")
        item.add_marker(pytest.mark.xdist_group("tiny-sweep" if shares_tiny_sweep else item.path.stem))
