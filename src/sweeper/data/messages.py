"""The commit message a CMG model learns to write: the first line (or all of it), optionally cleaned.

    >>> target_message("Fix crash on empty body (#123)\\n\\nSigned-off-by: A <a@b.c>", "first_line", clean=True)
    'Fix crash on empty body'
"""

from __future__ import annotations

import re

# Issue and pull-request references: "(#123)", "#123", "gh-123", "GH-123", "fixes #12" keeps "fixes".
_ISSUE = re.compile(r"\s*\(\s*(?:#|gh-)\d+\s*\)|(?<![\w/])(?:#|gh-)\d+\b", re.IGNORECASE)
# Trailer lines that say who, not what: sign-offs, co-authors, reviewers, Subversion import ids.
_TRAILER = re.compile(r"^\s*(signed-off-by|co-authored-by|reviewed-by|acked-by|cc|git-svn-id):", re.IGNORECASE)


def target_message(message: str, part: str = "first_line", clean: bool = False) -> str:
    """The message to generate: its first non-blank line or the whole message, cleaned if asked."""
    lines = message.strip().splitlines()
    if clean:
        lines = [_ISSUE.sub("", line) for line in lines if not _TRAILER.match(line)]
    lines = [" ".join(line.split()) for line in lines]
    if part == "first_line":
        return next((line for line in lines if line), "")
    return "\n".join(lines).strip()
