"""A local multi-node Ray cluster on loopback, for tests and benchmarks: a head without CPUs and worker nodes.

Each node is its own `ray start` in its own session (`setsid`) and `--temp-dir`, as on separate machines, with
token authentication on. The node's processes (raylet, agents, and the workers, which Ray puts in process groups
of their own) stay in that session after `ray start` returns, so a worker node is killed exactly (`kill_worker`:
SIGKILL to every process of its session, as a lost machine) and the cluster is stopped without touching any
other Ray on the machine (never `ray stop`, which stops every Ray process here).

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
    """The head's address, the environment that reaches the cluster, and the session of each node."""

    folder: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    head: int | None = None
    workers: list[int] = field(default_factory=list)  # sessions of the live worker nodes
    started_workers: int = 0
    temp_dirs: list[Path] = field(default_factory=list)  # short, in /tmp: Ray's socket paths have a length limit

    @classmethod
    @contextmanager
    def started(cls, folder: Path, workers: int = 2, env: dict[str, str] | None = None, head_cpus: int = 0
                ) -> Iterator["LocalCluster"]:
        """A head (with `head_cpus` CPUs for trials) and `workers` worker nodes of one CPU each, with a fresh auth
        token; every node killed at the end."""
        cluster = cls.create(folder, env)
        try:
            cluster.start_head(head_cpus)
            for _ in range(workers):
                cluster.add_worker()
            yield cluster
        finally:
            cluster.stop()

    @classmethod
    def create(cls, folder: Path, env: dict[str, str] | None = None) -> "LocalCluster":
        """A cluster not started yet: `env` (or this process's environment) with a fresh auth token."""
        base = {key: value for key, value in (env or os.environ).items() if key != "RAY_ADDRESS"}
        return cls(folder, {**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
                            "PATH": f"{BIN}:{base.get('PATH', '')}"})

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start_head(self, cpus: int = 0) -> None:
        self.head = self.ray_start("head", "--head", "--port", str(self.port), "--num-cpus", str(cpus),
                                   "--include-dashboard", "false", "--dashboard-port", str(free_port()),
                                   "--ray-client-server-port", str(free_port()))

    def add_worker(self) -> int:
        """Start one more worker node of one CPU; returns its session."""
        self.started_workers += 1
        session = self.ray_start(f"node{self.started_workers}", "--address", self.address, "--num-cpus", "1")
        self.workers.append(session)
        return session

    def worker_of(self, pid: int) -> int | None:
        """The live worker node (its session) that process `pid` runs on; None when it runs on none of them."""
        session = process_session(pid)
        return session if session in self.workers else None

    def kill_worker(self, session: int) -> None:
        """Lose a worker node at once: SIGKILL to its raylet, its workers and its agents."""
        self.workers.remove(session)
        kill_session(session)

    def stop(self) -> None:
        """SIGKILL every node started here (workers first), and wait until their processes are gone."""
        sessions = [*self.workers, *([self.head] if self.head else [])]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(session_processes(session) for session in sessions):
            for session in sessions:
                kill_session(session)
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
                                        "--temp-dir", str(temp_dir), "--disable-usage-stats",
                                        # not Ray's default port, which any other Ray on this machine holds
                                        "--dashboard-agent-listen-port", str(free_port())],
                                       env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = process.wait(timeout=START_SECONDS)
        except subprocess.TimeoutExpired:
            code = None
        if code != 0:
            kill_session(process.pid)
            raise RuntimeError(f"ray start ({name}) failed:\n{log.read_text()[-3000:]}")
        return process.pid


def kill_session(session: int) -> None:
    """SIGKILL every process of a session (`ray start` with start_new_session: its id is that process's pid)."""
    for pid in session_processes(session):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def process_session(pid: int) -> int | None:
    """The session of a running process (None when it is gone or a zombie)."""
    try:
        state, _, _, sid = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[:4]
    except (OSError, IndexError, ValueError):
        return None
    return None if state == "Z" else int(sid)


def session_processes(session: int) -> list[int]:
    """The running processes of a session (zombies waiting to be reaped left out)."""
    return [int(proc.name) for proc in Path("/proc").glob("[0-9]*") if process_session(int(proc.name)) == session]
