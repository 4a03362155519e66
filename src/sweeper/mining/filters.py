"""Why a commit is left out: the rules the shared data files were built with (see shared/data/README.md).

`cmg` keeps non-merge commits with a message, by a person, that are not version or dependency bumps and
whose diff is text of at most `max_lines` lines (larger ones are dropped, never truncated). `jitdp` keeps
non-merge commits with a text diff that touches at least one source file. Each function returns the
reason (a short key counted in the summary) or None to keep the commit.
"""

from __future__ import annotations

import re

# The shared CMG file's message rules, reconstructed from what it keeps and drops in click, flask and requests
# (bench: mining all three at the file's snapshots keeps the same commits but one "Merge fixes").
MERGE_MESSAGE = re.compile(
    r"^(merge (branch|remote-tracking branch|remote branch|pull request|tag|commit) "
    r"|merged?$|merged? (in|from|of) |merge #\d|merge (more )?(upstream )?changes\b)", re.IGNORECASE)
VERSION_BUMP = re.compile(
    r"^(bump(ed)? version\b|version bump\b|bump(ed)? to\b"
    r"|(release[sd]?|start(ed)?|prepare|version)( version)? v?\d+(\.\d+)+"
    r"|v?\d+(\.\d+)+[\w.-]*!?$"
    r"|(update|change|set|increment) (the )?version( number)?$)", re.IGNORECASE)
DEPENDENCY_BUMP = re.compile(r"^bump(s|ed)? \S+ from \S+ to \S+", re.IGNORECASE)
BOT_AUTHOR = re.compile(r"\[bot\]$")
FILE_HEADER = re.compile(r"^diff --git ", re.MULTILINE)
BINARY_FILE = re.compile(r"^(Binary files .* differ|GIT binary patch)$", re.MULTILINE)


def message_reason(message: str, author: str) -> str | None:
    """The `cmg` message and author rules, on the message's first line."""
    first = message.strip().splitlines()[0].strip() if message.strip() else ""
    if not first:
        return "empty-message"
    if BOT_AUTHOR.search(author.strip()):
        return "bot-author"
    if MERGE_MESSAGE.match(first):
        return "merge-message"
    if VERSION_BUMP.match(first):
        return "version-bump"
    if DEPENDENCY_BUMP.match(first):
        return "dependency-bump"
    return None


def diff_reason(diff: str, max_lines: int | None = None) -> str | None:
    """Empty diffs, diffs of binary files only, and (when `max_lines` is set) diffs longer than that."""
    files = len(FILE_HEADER.findall(diff))
    if files == 0:
        return "empty-diff"
    if len(BINARY_FILE.findall(diff)) >= files:
        return "binary-only-diff"
    if max_lines is not None and len(diff.splitlines()) > max_lines:
        return f"diff-over-{max_lines}-lines"
    return None
