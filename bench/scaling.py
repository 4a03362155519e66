"""Scaling out: the same sweep on a local Ray cluster of one worker node, then of two.

`ray start --head` (no CPUs: it only hosts the cluster's services), then worker nodes with one CPU each,
every node with its own `--temp-dir` as on separate machines, token authentication on. The sweep (LoRA
trials over a grid of learning rates, pruner none, two at a time) runs through `sweeper run` with
RAY_ADDRESS set, so its driver joins the cluster; Ray Tune's storage is a local folder, which every node
sees since they share this machine. Reported: trials per hour on 1 and on 2 nodes, and their ratio.

The nodes are stopped at the end, also on error or Ctrl-C: each `ray start` runs in its own process
group, and those groups are killed (SIGKILL, as `ray stop --force` does), which leaves any other Ray on
this machine alone.
`--ray-stop` also runs `ray stop --force` afterwards, which stops every Ray process on the machine.

    python bench/scaling.py             # 6 trials of about 20 s on 1 node, then on 2: about 4-5 minutes on 2 cores
    python bench/scaling.py --quick     # 2 tiny trials each: checks the script runs
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import common

TARGET_RATIO = 1.8


@dataclass
class LocalCluster:
    """A Ray cluster of processes on this machine: a head without CPUs and worker nodes of one CPU each."""

    folder: Path
    env: dict[str, str]
    port: int = field(default_factory=common.free_port)
    groups: list[int] = field(default_factory=list)  # process group of each `ray start`
    workers: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def ray_start(self, name: str, *args: str) -> None:
        temp_dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.folder))
        log = self.folder / f"{name}.log"
        with log.open("w") as out:
            process = subprocess.Popen([str(common.BIN / "ray"), "start", *args, "--node-ip-address", "127.0.0.1",
                                        "--temp-dir", str(temp_dir), "--disable-usage-stats"],
                                       env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.groups.append(process.pid)  # the node's daemons stay in this group after `ray start` returns
        started = time.perf_counter()
        if process.wait(timeout=180) != 0:
            raise RuntimeError(f"ray start ({name}) failed:\n{log.read_text()[-3000:]}")
        print(f"  ray start {name}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)

    def start_head(self) -> None:
        self.ray_start("head", "--head", "--port", str(self.port), "--num-cpus", "0", "--include-dashboard", "false",
                       "--dashboard-port", str(common.free_port()),
                       "--ray-client-server-port", str(common.free_port()))

    def add_worker(self) -> None:
        self.workers += 1
        self.ray_start(f"node{self.workers}", "--address", self.address, "--num-cpus", "1")

    def stop(self, everything: bool) -> None:
        """SIGKILL every process of the nodes started here, as `ray stop --force` does to every Ray process on the
        machine; with `everything`, `ray stop --force` as well."""
        for group in self.groups:
            signal_group(group, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(group_running(group) for group in self.groups):
            time.sleep(0.2)
        if everything:
            subprocess.run([str(common.BIN / "ray"), "stop", "--force"], env=self.env, capture_output=True, timeout=120)


def signal_group(group: int, number: signal.Signals) -> None:
    try:
        os.killpg(group, number)
    except ProcessLookupError:
        pass


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


def spec(trials: int, sample: int, epochs: int, max_length: int, storage: Path) -> dict[str, Any]:
    """`trials` LoRA trials of equal cost (a grid of as many learning rates), two at a time, no pruning."""
    return common.lora_grid_spec("bench-scaling", trials, sample, epochs, max_length, storage, max_concurrent=2)


@dataclass(frozen=True)
class Outcome:
    nodes: int
    wall_seconds: float
    span_seconds: float  # first trial run start to last trial run end
    used_nodes: int
    complete: int

    def per_hour(self, seconds: float) -> float:
        return self.complete * 3600 / seconds


def sweep_on(cluster: LocalCluster, spec_path: Path, folder: Path, uri: str) -> Outcome:
    nodes = cluster.workers
    print(f"  sweep on {nodes} worker node(s) ...", file=sys.stderr, flush=True)
    env = {**cluster.env, "RAY_ADDRESS": cluster.address}
    sweep = common.run_sweep(spec_path, uri, folder, f"scaling-{nodes}-nodes", env=env)
    runs = common.trial_runs(uri, sweep.summary["parent_run_id"])
    span = (max(run.info.end_time for run in runs) - min(run.info.start_time for run in runs)) / 1000
    used = len({run.data.tags.get("ray.node_id") for run in runs})
    complete = sum(1 for run in runs if run.data.tags.get("sweeper.state") == "complete")
    return Outcome(nodes, sweep.wall_seconds, span, used, complete)


def main() -> None:
    args = common.parser(__doc__.splitlines()[0])
    args.add_argument("--trials", type=int, help="trials per sweep (default 6; 2 with --quick)")
    args.add_argument("--ray-stop", action="store_true",
                      help="also run `ray stop --force` at the end (stops every Ray process on this machine)")
    options = args.parse_args()
    trials = options.trials or (2 if options.quick else 6)
    sample, epochs, max_length = (100, 1, 64) if options.quick else (480, 2, 128)

    from sweeper.backbone import embedded_backbone_dir

    embedded_backbone_dir()  # build the toy backbone before any node needs it
    with tempfile.TemporaryDirectory(prefix="bs-", dir="/tmp") as temp:  # short: Ray's socket paths are limited
        folder = Path(temp)
        spec_path = common.write_spec(folder, spec(trials, sample, epochs, max_length, folder / "ray-results"))
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
        env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
                "PATH": f"{common.BIN}:{os.environ.get('PATH', '')}"}
        cluster = LocalCluster(folder, env)
        try:
            cluster.start_head()
            cluster.add_worker()
            one = sweep_on(cluster, spec_path, folder, uri)
            cluster.add_worker()
            two = sweep_on(cluster, spec_path, folder, uri)
        finally:
            started = time.perf_counter()
            cluster.stop(everything=options.ray_stop)
            print(f"  cluster stopped: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)

    ratio_wall = two.per_hour(two.wall_seconds) / one.per_hour(one.wall_seconds)
    ratio_span = two.per_hour(two.span_seconds) / one.per_hour(one.span_seconds)
    common.print_report("Scaling out (bench/scaling.py)", {
        "cluster": "local: ray start --head --num-cpus 0, worker nodes --num-cpus 1, token auth, own --temp-dir each",
        "sweep": f"{trials} LoRA trials (grid over lr), max_concurrent 2, pruner none, via sweeper run + RAY_ADDRESS",
        "trial": f"bundled:jitdp, sample {sample}, max_length {max_length}, epochs {epochs}, 1 thread",
    }, [
        ("Per cluster", ("worker nodes", "trials complete", "nodes used", "sweep wall s", "trials/hour (wall)",
                         "trial span s", "trials/hour (span)"),
         [(o.nodes, o.complete, o.used_nodes, o.wall_seconds, o.per_hour(o.wall_seconds), o.span_seconds,
           o.per_hour(o.span_seconds)) for o in (one, two)]),
        ("2 nodes against 1 (span: first trial start to last trial end; wall: the whole `sweeper run`)",
         ("figure", "value", "target", "met"), [
            ("trials/hour ratio, trial span", ratio_span, f">= {TARGET_RATIO:g}x",
             common.verdict(ratio_span, TARGET_RATIO)),
            ("trials/hour ratio, sweep wall time (driver start-up included)", ratio_wall, "-", "-"),
        ]),
    ])


if __name__ == "__main__":
    main()
