"""Shared fixtures, started once per test run: a real S3-compatible server (moto, over HTTP) and a
real `mlflow server` process that keeps its artifacts in that S3 (see `services.py`)."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator

import pytest

import work_units
from services import MlflowServer, S3Server, start_mlflow, start_s3, stop

# `precision: auto` (the default) reads the CPU's flags: none here, so every test runs at fp32 whatever the CPU
# (a machine with AMX would run bf16). Subprocesses and Ray workers inherit it. Tests of `auto` pass flags in.
os.environ["SWEEPER_CPU_FLAGS"] = ""

MODULE_SECONDS: dict[str, float] = defaultdict(float)  # --store-durations


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


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--store-durations", action="store_true",
                     help="write each module's seconds into tests/durations.json (the order xdist starts units in)")


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """With `-n` (pytest-xdist): each module's tests go to one worker, the longest units first (`work_units.py`).
    xdist's own `loadgroup` marks do not work with pytest 9.2 (they rewrite a node id that pytest no longer reads)."""
    return work_units.make_scheduler(config, log)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Add up each module's seconds (in the process that reports: xdist's controller, or the only one)."""
    MODULE_SECONDS[report.nodeid.split("::", 1)[0]] += report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    if session.config.getoption("store_durations") and not hasattr(session.config, "workerinput"):
        work_units.store(MODULE_SECONDS)
