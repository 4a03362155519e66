"""Unified diffs to the lines a commit added and removed, and the study's text encoding.

    >>> changes = parse_diff("--- a/x\\n+++ b/x\\n@@ -1 +1 @@\\n-old\\n+new\\n")
    >>> changes.added, changes.removed
    (['new'], ['old'])
"""

from __future__ import annotations

from dataclasses import dataclass

ADD_MARKER = "[ADD]"
DEL_MARKER = "[DEL]"


@dataclass(frozen=True)
class DiffLines:
    """The added and removed lines of a diff, markers and file headers stripped."""

    added: list[str]
    removed: list[str]


def parse_diff(diff: str) -> DiffLines:
    """Added and removed lines of a unified diff (`git show` output); headers and context are dropped."""
    added: list[str] = []
    removed: list[str] = []
    in_hunk = False
    for line in diff.split("\n"):
        if line.startswith("diff --git"):
            in_hunk = False
        elif line.startswith("@@"):
            in_hunk = True
        elif not in_hunk:
            continue
        elif line.startswith("+"):
            added.append(line[1:].strip())
        elif line.startswith("-"):
            removed.append(line[1:].strip())
    return DiffLines([line for line in added if line], [line for line in removed if line])


def commit_text(message: str, diff: str) -> str:
    """The study's encoding as one string: message, then `[ADD]` added lines, then `[DEL]` removed lines."""
    changes = parse_diff(diff)
    return f"{message} {ADD_MARKER} {' '.join(changes.added)} {DEL_MARKER} {' '.join(changes.removed)}"
