"""A local multi-node Ray cluster on loopback, for tests and benchmarks: a head without CPUs and worker nodes.

Each node is its own `ray start` in its own process group and `--temp-dir`, as on separate machines, with token
authentication on. The node's daemons (raylet, workers, agents) stay in that group after `ray start` returns,
so a worker node is killed exactly (`kill_worker`: SIGKILL to its group, as a lost machine) and the cluster is
stopped without touching any other Ray on the machine (never `ray stop`, which stops every Ray process here).

Usage::

    with LocalCluster.started(folder, workers=2) as cluster:
        env = {**cluster.env, "RAY_ADDRESS": cluster.address}   # `sweeper run` with this env joins the cluster
        cluster.kill_worker(cluster.workers[0]); cluster.add_worker()
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from services import free_port

BIN = Path(sys.executable).parent
START_SECONDS = 180  # `ray start` of a node takes 5-20 s on two busy cores


@dataclass
class LocalCluster:
    """The head's address, the environment that reaches the cluster, and the process group of each node."""

    folder: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    head: int | None = None
    workers: list[int] = field(default_factory=list)  # process groups of the live worker nodes
    started_workers: int = 0
    temp_dirs: list[Path] = field(default_factory=list)  # short, in /tmp: Ray's socket paths have a length limit

    @classmethod
    @contextmanager
    def started(cls, folder: Path, workers: int = 2, env: dict[str, str] | None = None) -> Iterator["LocalCluster"]:
        """A head and `workers` worker nodes of one CPU each, with a fresh auth token; every node killed at the end."""
        base = {key: value for key, value in (env or os.environ).items() if key != "RAY_ADDRESS"}
        cluster = cls(folder, {**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
                               "PATH": f"{BIN}:{base.get('PATH', '')}"})
        try:
            cluster.start_head()
            for _ in range(workers):
                cluster.add_worker()
            yield cluster
        finally:
            cluster.stop()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start_head(self) -> None:
        self.head = self.ray_start("head", "--head", "--port", str(self.port), "--num-cpus", "0",
                                   "--include-dashboard", "false", "--dashboard-port", str(free_port()),
                                   "--ray-client-server-port", str(free_port()))

    def add_worker(self) -> int:
        """Start one more worker node of one CPU; returns its process group."""
        self.started_workers += 1
        group = self.ray_start(f"node{self.started_workers}", "--address", self.address, "--num-cpus", "1")
        self.workers.append(group)
        return group

    def busy_workers(self) -> list[int]:
        """The live worker nodes that host a Ray Tune trial's actor (Ray titles its process `ray::ImplicitFunc...`)."""
        return [group for group in self.workers if any("ImplicitFunc" in title for title in process_titles(group))]

    def kill_worker(self, group: int) -> None:
        """Lose a worker node at once: SIGKILL to its raylet, its workers and its agents."""
        self.workers.remove(group)
        kill_group(group)

    def stop(self) -> None:
        """SIGKILL every node started here (workers first), and wait until their processes are gone."""
        groups = [*self.workers, *([self.head] if self.head else [])]
        for group in groups:
            kill_group(group)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(group_running(group) for group in groups):
            time.sleep(0.2)
        for temp_dir in self.temp_dirs:
            shutil.rmtree(temp_dir, ignore_errors=True)
        self.workers, self.head, self.temp_dirs = [], None, []

    def ray_start(self, name: str, *args: str) -> int:
        temp_dir = Path(tempfile.mkdtemp(prefix=f"rc-{name}-", dir="/tmp"))
        self.temp_dirs.append(temp_dir)
        log = self.folder / f"{name}.log"
        with log.open("w") as out:
            process = subprocess.Popen([str(BIN / "ray"), "start", *args, "--node-ip-address", "127.0.0.1",
                                        "--temp-dir", str(temp_dir), "--disable-usage-stats"],
                                       env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = process.wait(timeout=START_SECONDS)
        except subprocess.TimeoutExpired:
            code = None
        if code != 0:
            kill_group(process.pid)
            raise RuntimeError(f"ray start ({name}) failed:\n{log.read_text()[-3000:]}")
        return process.pid


def kill_group(group: int) -> None:
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass


def process_titles(group: int) -> list[str]:
    """The command lines (Ray sets them to the task's title) of the running processes of a process group."""
    titles = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
            if int(pgrp) == group and state != "Z":
                titles.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except (OSError, IndexError, ValueError):
            continue
    return titles


def group_running(group: int) -> bool:
    """Whether a process of the group is still running (zombies waiting to be reaped do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError, ValueError):
            continue
        if int(pgrp) == group and state != "Z":
            return True
    return False
