"""Shared fixtures, started once per test run: a real S3-compatible server (moto, over HTTP) and a
real `mlflow server` process that keeps its artifacts in that S3 (see `services.py`)."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path

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


@functools.cache
def module_group(path: str) -> str:
    """The work unit of a module's tests under xdist: the module, except that every module reading the session's
    tiny sweep (it imports `tiny_sweep`) is one unit, so that the sweep runs once per test run. Read once per file."""
    module = Path(__file__).parent.parent / path
    reads_tiny_sweep = module.name.startswith("test_") and "from tiny_sweep import" in module.read_text()
    return "tiny-sweep" if reads_tiny_sweep else path


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """With `-n` (pytest-xdist): each module's tests go to one worker, so that a module's fixtures (a sweep, a
    cluster, a server) start once. xdist's own `loadgroup` marks do not work with pytest 9.2 (they rewrite a node id
    that pytest no longer reads), so the grouping is xdist's `loadscope` scheduler with our scope."""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return module_group(nodeid.split("::", 1)[0])

    return ModuleScheduling(config, log)
