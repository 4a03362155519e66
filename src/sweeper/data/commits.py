"""Commits from text: `git show` / `git log -p` output, a plain unified diff, or JSON Lines in the data format.

    >>> show = "commit 3f2a9c1\\nAuthor: A <a@b.c>\\nDate:   Mon Nov 25 10:15:00 2024 +0100\\n\\n    Fix the null check\\n\\n"
    >>> records = parse_commits(show + "diff --git a/A.java b/A.java\\n@@ -1 +1 @@\\n-a\\n+b\\n")
    >>> records[0].message, records[0].diff[:10]
    ('Fix the null check', 'diff --git')
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from sweeper.data.records import CommitRecord, parse_line
from sweeper.errors import DataError

COMMIT_LINE = re.compile(r"^commit ([0-9a-f]{7,64})\b", re.MULTILINE)
GIT_DATE = "%a %b %d %H:%M:%S %Y %z"


def parse_commits(text: str, source: str = "<stdin>") -> list[CommitRecord]:
    """Every commit in `text`, whichever of the three formats it is in."""
    stripped = text.lstrip()
    if not stripped:
        raise DataError(source, None, None, "no input: pipe in `git show`, a unified diff or JSON Lines")
    if stripped.startswith("{"):
        return [parse_line(line.encode("utf-8"), source, number, task="predict")
                for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    starts = [match.start() for match in COMMIT_LINE.finditer(text)]
    if starts and not text[:starts[0]].strip():
        return [parse_git_show(text[start:end]) for start, end in zip(starts, starts[1:] + [len(text)])]
    if not re.search(r"^(diff --git |--- |@@ )", text, re.MULTILINE):
        raise DataError(source, None, None, "not `git show` output, a unified diff or JSON Lines")
    return [CommitRecord(id="diff", date=datetime.now(timezone.utc), message="", diff=text)]


def parse_git_show(block: str) -> CommitRecord:
    """One commit as `git show` prints it: header lines, a blank line, the message indented by 4, the diff."""
    lines = block.split("\n")
    commit = COMMIT_LINE.match(lines[0])
    assert commit is not None
    index, date = 1, datetime.now(timezone.utc)
    while index < len(lines) and lines[index].strip():  # Author:, Date:, Merge: ...
        key, _, value = lines[index].partition(":")
        if key in ("Date", "AuthorDate"):
            date = parse_git_date(value.strip(), date)
        index += 1
    message: list[str] = []
    while index < len(lines) and (lines[index].startswith("    ") or not lines[index].strip()):
        message.append(lines[index][4:])
        index += 1
    return CommitRecord(id=commit.group(1), date=date, message="\n".join(message).strip(),
                        diff="\n".join(lines[index:]).strip("\n") + "\n")


def parse_git_date(text: str, fallback: datetime) -> datetime:
    """git's default date (`Mon Nov 25 10:15:00 2024 +0100`) or ISO-8601; else `fallback`."""
    for parse in (lambda t: datetime.strptime(t, GIT_DATE), datetime.fromisoformat):
        try:
            return parse(text)
        except ValueError:
            continue
    return fallback
