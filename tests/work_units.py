"""How the suite is shared between pytest-xdist's two workers: which tests form one work unit, and in what order the
units start.

A unit is a module (its fixtures, a cluster, a server, a sweep, start once), except that every module reading the
session's tiny sweep is one unit, so that the sweep runs once. Units start longest first (the longest-processing-time
rule): with few, very unequal units, a long unit that starts last leaves the other worker idle for its whole length.
The lengths are the seconds recorded in `tests/durations.json` by the last `--store-durations` run; a module not in
it starts after the known ones, in xdist's order.
"""

from __future__ import annotations

import functools
import json
from collections import OrderedDict, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DURATIONS = Path(__file__).with_name("durations.json")


@functools.cache
def module_group(path: str) -> str:
    """The work unit of the tests in `path` (a file relative to the repository). Read once per file."""
    module = ROOT / path
    reads_tiny_sweep = module.name.startswith("test_") and "from tiny_sweep import" in module.read_text()
    return "tiny-sweep" if reads_tiny_sweep else path


def recorded_seconds() -> dict[str, float]:
    """Seconds per module (setup, call and teardown of its tests) from the last `--store-durations` run."""
    return json.loads(DURATIONS.read_text()) if DURATIONS.exists() else {}


def unit_seconds(modules: dict[str, float]) -> dict[str, float]:
    """Seconds per work unit: the sum over its modules."""
    units: dict[str, float] = defaultdict(float)
    for path, seconds in modules.items():
        if (ROOT / path).exists():
            units[module_group(path)] += seconds
    return units


def longest_first(workqueue: OrderedDict[str, dict[str, bool]], seconds: dict[str, float]) -> None:
    """Reorder `workqueue` (unit -> its tests) in place: known units by their seconds, longest first, then the rest
    in their order (a stable sort)."""
    ordered = sorted(workqueue.items(), key=lambda item: -seconds.get(item[0], 0.0))
    workqueue.clear()
    workqueue.update(ordered)


def store(measured: dict[str, float]) -> None:
    """Write the measured seconds per module into `tests/durations.json` (those of a second or more), keeping the
    modules this run did not run."""
    modules = recorded_seconds() | {path: round(seconds, 1) for path, seconds in measured.items() if seconds >= 1}
    DURATIONS.write_text(json.dumps(dict(sorted(modules.items())), indent=1) + "\n")


def make_scheduler(config: object, log: object) -> object:
    """xdist's `loadscope` scheduler with our units, started longest first."""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        ordered = False

        def _split_scope(self, nodeid: str) -> str:
            return module_group(nodeid.split("::", 1)[0])

        def _assign_work_unit(self, node: object) -> None:
            if not self.ordered:  # the queue is complete before the first unit is assigned
                longest_first(self.workqueue, unit_seconds(recorded_seconds()))
                self.ordered = True
            super()._assign_work_unit(node)

    return ModuleScheduling(config, log)
