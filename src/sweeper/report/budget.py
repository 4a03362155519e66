"""How many trials a sweep's budget allowed and how many ran, and why it stopped short (`sweep.stop`)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from sweeper.tracking.schema import BUDGET_TRIALS, Tag


@dataclass(frozen=True)
class Stopped:
    """Why a sweep stopped before its budget, after how many ended trials, and the two figures then."""

    reason: str
    trials: int
    bound: float
    error: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def stopped_of(tags: dict[str, str]) -> Stopped | None:
    """The decision a parent run's tags record, if the sweep stopped as decided."""
    text = tags.get(Tag.STOPPED)
    return Stopped(**json.loads(text)) if text else None


def trials_used(tags: dict[str, str], metrics: dict[str, float], ran: int) -> dict[str, Any]:
    """`{"budget": 12, "ran": 5, "stopped": {...} | None}` from the parent run's tags and metrics; budget None for a
    sweep recorded before budgets were logged."""
    budget = metrics.get(BUDGET_TRIALS)
    stopped = stopped_of(tags)
    return {"budget": None if budget is None else int(budget), "ran": ran,
            "stopped": stopped.as_dict() if stopped else None}


def trials_used_text(used: dict[str, Any]) -> str:
    """`5 of a budget of 12 trials ran: stopped early, decided after ...`."""
    budget = "" if used["budget"] is None else f" of a budget of {used['budget']}"
    text = f"{used['ran']}{budget} trials ran"
    stopped = used["stopped"]
    return text + (f": stopped early, {stopped['reason']}." if stopped else ".")


def stop_note(verdict_text: str | None, stopped: Stopped | None) -> str | None:
    """The verdict line of the parent run's note, with the reason the sweep stopped early, if it did."""
    if stopped is None:
        return verdict_text
    return f"{verdict_text or ''} Stopped early, {stopped.reason}.".strip()
