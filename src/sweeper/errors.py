"""Errors a user can fix: the CLI prints them as one line, never as a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SweeperError(Exception):
    """A mistake in the user's input or environment, with what to do about it."""


class DataError(SweeperError):
    """A bad data record: names the file, the line and the field."""

    def __init__(self, source: str, line: int | None, field: str | None, problem: str) -> None:
        self.source, self.line, self.field, self.problem = source, line, field, problem
        where = source if line is None else f"{source}:{line}"
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}: {what}{problem}")

    def __reduce__(self) -> tuple:  # picklable: errors cross process boundaries in Ray
        return type(self), (self.source, self.line, self.field, self.problem)


class SpecError(SweeperError):
    """A bad spec or override: names the file, the field and the fix."""

    def __init__(self, source: str, field: str, problem: str, fix: str = "") -> None:
        self.source, self.field, self.problem, self.fix = source, field, problem, fix
        hint = f" ({fix})" if fix else ""
        super().__init__(f"{source}: field '{field}': {problem}{hint}")

    def __reduce__(self) -> tuple:  # picklable: errors cross process boundaries in Ray
        return type(self), (self.source, self.field, self.problem, self.fix)


class MethodError(SweeperError):
    """A fine-tuning method that cannot be applied to the chosen backbone."""


def did_you_mean(word: str, known: Iterable[str]) -> str | None:
    """`did you mean 'rank'?` for the known word closest to a misspelt one; None when nothing is close.

    >>> did_you_mean("rnak", ["rank", "alpha"])
    "did you mean 'rank'?"
    """
    close = difflib.get_close_matches(word, sorted(known), n=1)
    return f"did you mean '{close[0]}'?" if close else None
