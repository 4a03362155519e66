"""Helpers shared by the benchmark scripts: the machine, tables, an MLflow server, specs, sweeps.

Every script prints its results as plain-text tables (pipe tables, so they paste into BENCHMARKS.md)
headed by the machine and the date. Nothing here asserts a timing: the scripts report, people judge.
The services and MLflow lookups are the tests' own (`tests/services.py`, `tests/harness.py`): one copy of each.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the scripts run from the repository root: `python bench/overhead.py`

from harness import cli_environment, trial_runs  # noqa: E402, F401 (trial_runs and free_port: for the scripts)
from services import free_port, start_mlflow, stop  # noqa: E402, F401

BIN = Path(sys.executable).parent
SHARED_JITDP = REPO.parent / "shared" / "data" / "jitdp" / "jit-defects4j-a.jsonl.gz"
Row = Sequence[Any]


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the `--quick` flag every benchmark takes."""
    args = argparse.ArgumentParser(description=description)
    args.add_argument("--quick", action="store_true", help="tiny sizes: checks the script runs (well under a minute)")
    return args


def cores() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU model as /proc/cpuinfo names it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name() -> str:
    """The visible GPUs, or 'none'."""
    try:
        import torch

        if torch.cuda.is_available():
            return ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    except ImportError:
        pass
    return "none"


def machine_rows() -> list[Row]:
    """Who measured what, where and when."""
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return [("date", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
            ("cores", f"{cores()} (of {os.cpu_count()})"), ("cpu", cpu_model()), ("gpu", gpu_name()),
            ("python", platform.python_version()), ("load average at the end (1, 5, 15 min)", load)]


def table(headers: Row, rows: Sequence[Row]) -> str:
    """A plain-text pipe table with aligned columns."""
    cells = [[str(cell) for cell in headers]] + [[format_cell(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    line = lambda row: "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |"  # noqa: E731
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (width + 2) for width in widths) + "|",
                      *(line(row) for row in cells[1:])])


def format_cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def print_report(title: str, settings: dict[str, Any], sections: Sequence[tuple[str, Row, Sequence[Row]]]) -> None:
    """The machine, the settings, then each (heading, headers, rows) section as a table."""
    print(f"\n## {title}\n")
    print(table(("machine", ""), machine_rows()))
    print()
    print(table(("setting", "value"), list(settings.items())))
    for heading, headers, rows in sections:
        print(f"\n{heading}\n")
        print(table(headers, rows))
    print(flush=True)


def verdict(value: float, target: float, at_least: bool = True) -> str:
    """'yes' or 'no' for a target."""
    return "yes" if (value >= target if at_least else value <= target) else "no"


def jitdp_data() -> str:
    """The shared JIT-Defects4J file when it is there (../shared/data from the repo), else the bundled sample."""
    return str(SHARED_JITDP) if SHARED_JITDP.is_file() else "bundled:jitdp"


def lora_grid_sizes(description: str) -> tuple[int, int, int, int]:
    """The command line of a script that runs `lora_grid_spec` trials (`--quick`, `--trials`): how many trials,
    and their sample, epochs and max_length (trials of about 30 s; tiny ones with --quick)."""
    args = parser(description)
    args.add_argument("--trials", type=int, help="trials in each mode (default 4; 2 with --quick)")
    options = args.parse_args()
    sample, epochs, max_length = (120, 1, 64) if options.quick else (560, 3, 128)
    return options.trials or (2 if options.quick else 4), sample, epochs, max_length


def lora_grid_spec(name: str, trials: int, sample: int, epochs: int, max_length: int, storage: Path,
                   max_concurrent: int) -> dict[str, Any]:
    """`trials` LoRA trials of equal cost on the bundled data (a grid of as many learning rates), no pruning."""
    rates = [round(1e-4 * 30 ** (i / max(trials - 1, 1)), 6) for i in range(trials)]  # 1e-4 .. 3e-3
    return {
        "name": name,
        "data": {"path": "bundled:jitdp", "sample": sample, "split": {"kind": "time", "valid": 0.25},
                 "max_length": max_length},
        "backbone": "embedded",
        "metric": "auc",
        "defaults": {"method": "lora", "epochs": epochs, "batch_size": 16, "class_weighting": True,
                     "lora": {"rank": 8}},
        "search": {"lr": {"choice": rates}},
        "sweep": {"trials": trials, "searcher": "grid", "pruner": {"kind": "none"}, "max_concurrent": max_concurrent,
                  "resources": {"cpu": 1}, "seed": 0},
        "tracking": {"storage": str(storage)},
    }


def write_spec(folder: Path, spec: dict[str, Any], name: str = "spec.yaml") -> Path:
    """Write a spec mapping as YAML into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@contextmanager
def mlflow_server(folder: Path) -> Iterator[str]:
    """A real `mlflow server` on localhost (SQLite backend, artifacts in `folder`); yields its URI."""
    folder.mkdir(parents=True, exist_ok=True)
    server = start_mlflow(folder)
    try:
        yield server.uri
    finally:
        stop(server.process)


@dataclass(frozen=True)
class SweepRun:
    """A finished `sweeper run`: what it printed as JSON, its wall time and when it started and ended (epoch s)."""

    summary: dict[str, Any]
    wall_seconds: float
    started: float
    ended: float


def run_sweep(spec: Path, tracking_uri: str, cwd: Path, sweep_id: str, env: dict[str, str] | None = None,
              timeout: float = 3600) -> SweepRun:
    """`sweeper run SPEC --json` as a user runs it, in `cwd`; its output goes to `cwd/SWEEP_ID.log`.

    Without RAY_ADDRESS in `env` the sweep starts its own embedded Ray, in a private RAY_TMPDIR: Ray would
    otherwise join any cluster a `ray start` left on this machine (it looks in /tmp/ray/ray_current_cluster).
    """
    command = [str(BIN / "sweeper"), "run", str(spec), "--tracking-uri", tracking_uri, "--sweep-id", sweep_id, "--json"]
    log = cwd / f"{sweep_id}.log"
    started = time.time()
    clock = time.perf_counter()
    path = {"PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    with cli_environment({**(env or os.environ), **path}, inherit=False) as environment, log.open("w") as out:
        done = subprocess.run(command, cwd=cwd, env=environment, stdout=subprocess.PIPE, stderr=out, text=True,
                              timeout=timeout)
    wall = time.perf_counter() - clock
    ended = time.time()
    print(f"  sweeper run {sweep_id}: {wall:.1f} s", file=sys.stderr, flush=True)
    log.write_text(log.read_text() + done.stdout)
    if done.returncode != 0:
        raise RuntimeError(f"sweeper run failed ({done.returncode}); last output:\n{log.read_text()[-4000:]}")
    return SweepRun(json.loads(done.stdout.strip().splitlines()[-1]), wall, started, ended)


def metric_history_length(tracking_uri: str, run_id: str, key: str) -> int:
    from mlflow import MlflowClient

    return len(MlflowClient(tracking_uri).get_metric_history(run_id, key))
