"""Re-running a logged trial from its MLflow params and comparing the metrics and predictions it gets.

On a machine of the kind the trial ran on (same CPU kernels, GPU, torch and math libraries: `machine.py`) the numbers
must be identical, bit for bit. Elsewhere, other kernels round differently (an fp32 sum in another order differs in
the 7th digit, and training carries that on), so the numbers must be equal within a tolerance: `DEFAULT_TOLERANCE`,
absolute, on every metric and every predicted probability, far below any difference a validation split resolves.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sweeper.predictions import read_predictions
from sweeper.config import TrialConfig
from sweeper.errors import SpecError, SweeperError
from sweeper.machine import describe_machine, machine_kind
from sweeper.tracking.client import Tracker
from sweeper.tracking.schema import BEST_PREFIX, PREDICTIONS_FILE, Tag
from sweeper.trial import run_trial

DEFAULT_TOLERANCE = 1e-4
IDENTICAL, WITHIN_TOLERANCE, DIFFER = "identical", "within_tolerance", "differ"


@dataclass(frozen=True)
class Reproduction:
    """The logged and the re-run metrics of one trial, how its validation predictions compare (None when the run
    logged none), and the machine it was logged on (None for a run that did not record it)."""

    run_id: str
    original: dict[str, float]
    reproduced: dict[str, float]
    predictions: int = 0
    predictions_differing: int | None = None
    largest_prediction_difference: float | None = None  # of predicted probabilities; None for generated text
    machine: dict[str, str] | None = None

    def mismatches(self) -> list[str]:
        """Metric names whose values differ, and `predictions` if any prediction does."""
        names = [name for name, value in self.original.items() if self.reproduced.get(name) != value]
        return names + (["predictions"] if self.predictions_differing else [])

    @property
    def same_machine(self) -> bool | None:
        """Whether this machine is of the kind the run was logged on (None: the run does not say)."""
        return None if self.machine is None else machine_kind(self.machine) == machine_kind(describe_machine())

    def largest_difference(self) -> tuple[str, float]:
        """The metric (or `predictions`) that moved most, and by how much (inf for one missing)."""
        moved = {name: abs(value - self.reproduced[name]) if name in self.reproduced else math.inf
                 for name, value in self.original.items()}
        if self.largest_prediction_difference is not None:
            moved["predictions"] = self.largest_prediction_difference
        elif self.predictions_differing:  # generated messages: no distance, only equal or not
            moved["predictions"] = math.inf
        return max(moved.items(), key=lambda item: item[1], default=("", 0.0))

    def outcome(self, tolerance: float = DEFAULT_TOLERANCE) -> str:
        """IDENTICAL; WITHIN_TOLERANCE where the run came from another (or an unrecorded) machine kind and nothing
        moved more than `tolerance`; DIFFER otherwise (on the same machine kind, any difference)."""
        if not self.mismatches():
            return IDENTICAL
        if self.same_machine is True or self.largest_difference()[1] > tolerance:
            return DIFFER
        return WITHIN_TOLERANCE

    def summary(self, tolerance: float = DEFAULT_TOLERANCE) -> str:
        """The outcome in one line."""
        outcome = self.outcome(tolerance)
        if outcome == IDENTICAL:
            return "identical"
        name, moved = self.largest_difference()
        where = ("on the machine kind it ran on, where the numbers must be identical" if self.same_machine else
                 f"on another machine than the run's ({self.machine_text()})")
        if outcome == WITHIN_TOLERANCE:
            return f"equal within {tolerance:g}: the largest difference is {moved:.3g} ({name}), {where}"
        return f"differ: {', '.join(self.mismatches())}; the largest difference is {moved:.3g} ({name}), {where}" + (
            "" if self.same_machine else f", beyond the tolerance {tolerance:g}")

    def machine_text(self) -> str:
        here = describe_machine()
        if self.machine is None:
            return f"the run recorded none; this one: {here['cpu']}, {here['cpu_flags'] or 'no vector flags'}"
        changed = [f"{key} {self.machine.get(key)!r} here {value!r}" for key, value in here.items()
                   if self.machine.get(key) != value]
        return "; ".join(changed)

    def as_json(self, tolerance: float = DEFAULT_TOLERANCE) -> dict:
        name, moved = self.largest_difference()
        return {"run_id": self.run_id, "outcome": self.outcome(tolerance), "tolerance": tolerance,
                "largest_difference": {"name": name, "value": moved if math.isfinite(moved) else None},
                "same_machine": self.same_machine, "machine": self.machine, "this_machine": describe_machine(),
                "original": self.original, "reproduced": self.reproduced, "predictions": self.predictions,
                "predictions_differing": self.predictions_differing}


def reproduce(tracker: Tracker, run_id: str) -> Reproduction:
    """Fetch the run's params, train the same trial in this process, and pair the metrics and predictions."""
    run = tracker.trial_run(run_id)
    try:
        config = TrialConfig.from_flat(run.data.params, f"params of run {run_id}")
    except SpecError as error:  # changed after the run (by hand, in the store): say where the true values are
        fix = "; ".join(filter(None, [error.fix, "the run's config.json artifact holds the values it ran with"]))
        raise SpecError(error.source, error.field, error.problem, fix) from None
    original = {key.removeprefix(BEST_PREFIX): value for key, value in run.data.metrics.items()
                if key.startswith(BEST_PREFIX)}
    if not original:
        raise SweeperError(f"run {run_id} has no final metrics (was it pruned or failed?)")
    machine = json.loads(run.data.tags[Tag.MACHINE]) if Tag.MACHINE in run.data.tags else None
    with tempfile.TemporaryDirectory(prefix="sweeper-reproduce-") as folder:
        again, logged = Path(folder) / "again", Path(folder) / "logged"
        result = run_trial(config, again)
        reproduced = {name: result.metrics[name] for name in original if name in result.metrics}
        names = {item.path for item in tracker.client.list_artifacts(run_id)}
        if PREDICTIONS_FILE not in names:
            return Reproduction(run_id, original, reproduced, machine=machine)
        logged.mkdir()
        tracker.client.download_artifacts(run_id, PREDICTIONS_FILE, str(logged))
        before, after = (read_predictions(folder / PREDICTIONS_FILE).values for folder in (logged, again))
    return Reproduction(run_id, original, reproduced, len(before), *compare_predictions(before, after), machine)


def compare_predictions(before: list, after: list) -> tuple[int, float | None]:
    """How many predictions differ (a missing one counts), and the largest difference of probabilities (None for
    generated text; inf when the counts differ)."""
    differing = sum(a != b for a, b in zip(before, after)) + abs(len(before) - len(after))
    if not all(isinstance(value, float) for value in [*before, *after]):
        return differing, None
    if len(before) != len(after):
        return differing, math.inf
    return differing, max((abs(a - b) for a, b in zip(before, after)), default=0.0)
