"""A hold point for fault-injection tests and benchmarks, so that they act on events, not on the clock.

A test that kills a worker, a node or the tracking server must know that a trial is mid-run when it strikes,
whatever the machine's speed. When `$SWEEPER_HOLD` names a file that exists, a trial that has just reported an
evaluation other than its last (the driver has its result and its checkpoint) writes a note of where it is
(`<file>.held/<trial>-<evaluation>.json`: trial, evaluation, pid, Ray node) and waits until the file is removed.
Unset, as always outside tests and benchmarks, it costs one environment lookup per evaluation.

Usage (the side that injects the faults)::

    gate = folder / "hold"; gate.touch()                  # before the sweep starts, with SWEEPER_HOLD=gate
    trials = wait_for_held(gate, deadline)                 # trials known to be between two evaluations
    ...kill one of trials[0].pid's node...
    gate.unlink()                                          # every held trial goes on

or step a sweep evaluation by evaluation: `release(gate, held, deadline)` lets the held trials go on to their next
hold point and puts the hold back.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

HOLD_ENV = "SWEEPER_HOLD"
POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Held:
    """A trial waiting at the hold point: which, after which evaluation, in which process on which node."""

    trial: str
    evaluation: int
    pid: int
    node: str


def notes_folder(gate: Path) -> Path:
    return gate.with_name(gate.name + ".held")


def note_path(gate: Path, trial: str, evaluation: int) -> Path:
    return notes_folder(gate) / f"{trial}-{evaluation}.json"


def hold_after_evaluation(trial: str, evaluation: int, node: str) -> None:
    """Wait here while `$SWEEPER_HOLD`'s file exists, with a note saying so; return at once when it is unset."""
    name = os.environ.get(HOLD_ENV)
    if not name or not Path(name).exists():
        return
    gate = Path(name)
    note = note_path(gate, trial, evaluation)
    note.parent.mkdir(parents=True, exist_ok=True)
    held = Held(trial, evaluation, os.getpid(), node)
    note.write_text(json.dumps(held.__dict__))
    while gate.exists():
        time.sleep(POLL_SECONDS)
    note.unlink(missing_ok=True)


def held_trials(gate: Path) -> list[Held]:
    """The trials whose process is alive and waiting at the hold point (a killed trial's note stays behind)."""
    found = []
    for note in sorted(notes_folder(gate).glob("*.json")):
        try:
            held = Held(**json.loads(note.read_text()))
        except (OSError, ValueError, TypeError):  # being written or removed just now
            continue
        if Path(f"/proc/{held.pid}").exists():
            found.append(held)
    return found


def wait_for_held(gate: Path, deadline: float, count: int = 1) -> list[Held]:
    """Block until at least `count` live trials wait at the hold point; fail naming that condition at `deadline`
    (a `time.monotonic()` value)."""
    while time.monotonic() < deadline:
        held = held_trials(gate)
        if len(held) >= count:
            return held
        time.sleep(POLL_SECONDS * 4)
    raise TimeoutError(f"no {count} trial(s) reached the hold point (an evaluation other than the last) "
                       f"before the deadline; notes in {notes_folder(gate)}: {held_trials(gate)}")


def release(gate: Path, held: list[Held], deadline: float) -> None:
    """Lift the hold until each of `held` has gone on (its note removed), then put it back: they wait again at their
    next hold point."""
    gate.unlink()
    notes = [note_path(gate, one.trial, one.evaluation) for one in held]
    while any(note.exists() and Path(f"/proc/{one.pid}").exists() for note, one in zip(notes, held)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"held trials did not go on when the hold was lifted: {held}")
        time.sleep(POLL_SECONDS)
    gate.touch()
