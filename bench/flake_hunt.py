"""Flake hunt: run the tests that start Ray, kill a process or wait on a server again and again, alone and beside a
CPU-heavy neighbour (a Python busy loop on one core), and count the passes.

A test that depends on the machine's speed fails here first. Each run is one `pytest` process per module, so the
module's shared fixtures (a cluster, a server, a sweep) are made anew each time, as in CI.

    python bench/flake_hunt.py                                   # every module below, 5 runs alone, 3 beside the loop
    python bench/flake_hunt.py --alone 2 --busy 1 tests/test_faults.py
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from contextlib import contextmanager
from collections.abc import Iterator

import common

# The modules whose tests start Ray (local or a multi-node cluster), kill a process, or wait on a server.
MODULES = ["tests/test_chaos.py", "tests/test_faults.py", "tests/test_resume.py", "tests/test_tracking_outage.py",
           "tests/test_cluster.py", "tests/test_mlflow_auth.py", "tests/test_ui.py", "tests/test_sweep.py"]


@contextmanager
def busy_neighbour(on: bool) -> Iterator[None]:
    """A Python busy loop on one core for as long as the block runs (nothing when `on` is false)."""
    loop = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if on else None
    try:
        yield
    finally:
        if loop is not None:
            loop.kill()
            loop.wait()


def run_module(module: str, busy: bool) -> tuple[bool, float, str]:
    """One pytest run of `module`: passed or not, its seconds, and its summary line."""
    started = time.monotonic()
    with busy_neighbour(busy):
        out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", module],
                             cwd=common.REPO, capture_output=True, text=True)
    lines = out.stdout.strip().splitlines()
    return out.returncode == 0, time.monotonic() - started, lines[-1] if lines else out.stderr[-300:]


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("modules", nargs="*", default=MODULES, help="test modules (default: every one that kills, "
                                                                  "starts Ray or waits on a server)")
    args.add_argument("--alone", type=int, default=5, help="runs of each module alone (default 5)")
    args.add_argument("--busy", type=int, default=3, help="runs beside a busy loop on one core (default 3)")
    options = args.parse_args()
    rows = []
    for module in options.modules:
        for busy, runs in ((False, options.alone), (True, options.busy)):
            outcomes = []
            for number in range(1, runs + 1):
                passed, seconds, summary = run_module(module, busy)
                outcomes.append((passed, seconds))
                print(f"{module} {'busy' if busy else 'alone'} run {number}: {summary} ({seconds:.0f} s)", flush=True)
            if runs:
                rows.append((module, "beside a busy loop" if busy else "alone", runs,
                             sum(passed for passed, _ in outcomes),
                             f"{min(s for _, s in outcomes):.0f}-{max(s for _, s in outcomes):.0f}"))
    print("\n| module | neighbour | runs | passed | seconds per run |\n|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")
    return 0 if all(row[2] == row[3] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
