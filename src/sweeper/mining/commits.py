"""Walking a local clone with PyDriller: which commits exist, in what order, and what each one changed.

The walk keeps what the change metrics need of every commit (author, author time, per-file lines added and
deleted, renames) in a small `Change`; the message, date and diff of the commits written out are read
separately (`record_fields`), so commits of other branches cost only their numstat.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sweeper.errors import SweeperError
from sweeper.mining.gitcli import git, run_git


@dataclass(frozen=True)
class FileChange:
    """One file of a commit: its path after the commit (before it, for a deletion), the path before a
    rename, and the lines added and deleted (0 and 0 for a binary file, as `git log --numstat` counts)."""

    path: str
    old_path: str | None
    added: int
    deleted: int


@dataclass(frozen=True)
class Change:
    """What a commit did, as the history metrics see it."""

    sha: str
    author: str
    time: int  # author time, seconds since the epoch
    merge: bool
    files: tuple[FileChange, ...]

    def to_json(self) -> dict[str, Any]:
        return {"sha": self.sha, "author": self.author, "time": self.time, "merge": self.merge,
                "files": [[f.path, f.old_path, f.added, f.deleted] for f in self.files]}

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Change:
        return cls(row["sha"], row["author"], row["time"], row["merge"],
                   tuple(FileChange(path, old, added, deleted) for path, old, added, deleted in row["files"]))


def check_repository(path: Path) -> Path:
    """The clone's top folder (a bare repository's own), or one SweeperError line when it is not a repository."""
    if not path.is_dir():
        raise SweeperError(f"{path}: no such folder (give the path of a local git clone)")
    try:
        if run_git(path, "rev-parse", "--is-bare-repository").strip() == b"true":
            return path.resolve()
        return Path(run_git(path, "rev-parse", "--show-toplevel").decode().strip())
    except SweeperError:
        raise SweeperError(f"{path}: not a git repository (give the path of a local clone)") from None


def resolve_branch(repo: Path, branch: str | None) -> str:
    """The commit a branch (or any revision; default HEAD) points to; SweeperError when unknown."""
    revision = branch or "HEAD"
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}").decode().strip()
    except SweeperError:
        raise SweeperError(f"{repo}: unknown branch or revision '{revision}' "
                           "(see `git branch -a`; remote branches are origin/NAME)") from None


def branch_shas(repo: Path, tip: str) -> list[str]:
    """Every commit reachable from `tip`."""
    return git(repo, "rev-list", tip).decode().split()


def walk(repo: Path, tip: str, all_refs: bool) -> Iterator[Any]:
    """PyDriller commits reachable from `tip` (and from every ref when `all_refs`), oldest author date first, no
    commit before its parents (`git rev-list --author-date-order --reverse`)."""
    from pydriller import Repository

    yield from Repository(str(repo), only_in_branch=tip, include_refs=all_refs or None,
                          order="author-date-order").traverse_commits()


def author_time(commit: Any) -> int:
    """Author time in epoch seconds, read from GitPython (PyDriller's datetime fails on impossible offsets)."""
    return int(commit._c_object.authored_date)


def commit_time(commit: Any) -> int:
    """Committer time in epoch seconds (later than the author time for a rebased or cherry-picked commit)."""
    return int(commit._c_object.committed_date)


HISTORY_ORDERS = ("commit", "author")


def in_history_order(commits: Iterable[Any], order: str) -> list[Any]:
    """Commits in the order the history metrics replay them: by commit date (JIT-Defects4J's order, the default:
    a commit rebased months after it was written counts the author's commits made meanwhile), commits of one commit
    date in the order given (`walk`'s: parents first, as `git log --reverse` has them; commons-lang has a series of
    rebased commits applied within a second); or by author date, ties by sha."""
    if order not in HISTORY_ORDERS:
        raise SweeperError(f"--history-order: unknown order '{order}' (choose commit or author)")
    if order == "commit":
        return sorted(commits, key=commit_time)  # stable: ties keep the walk's order
    return sorted(commits, key=lambda c: (author_time(c), c.hash))


def change_of(commit: Any) -> Change:
    """Read a PyDriller commit's file changes (the costly part of the walk: one `git diff` per commit)."""
    files: list[FileChange] = []
    if not commit.merge:
        for mod in commit.modified_files:
            path = mod.new_path or mod.old_path
            old = mod.old_path if mod.old_path and mod.new_path and mod.old_path != mod.new_path else None
            files.append(FileChange(path, old, mod.added_lines, mod.deleted_lines))
    return Change(commit.hash, commit.author.name or "", author_time(commit), commit.merge, tuple(files))


def message_of(commit: Any) -> str:
    """The full message as git stores it (PyDriller's `msg` also strips leading whitespace)."""
    raw = commit._c_object.message
    return raw if isinstance(raw, str) else raw.decode("utf-8", "replace")


def record_fields(commit: Any) -> dict[str, str]:
    """Author name, date (`%aI`) and message (trailing whitespace removed) of a commit to write out."""
    raw = commit._c_object
    try:
        date = commit.author_date.isoformat()
    except (ValueError, OverflowError):  # an impossible offset (psf/requests has +51800): UTC, as the shared data does
        date = datetime.fromtimestamp(raw.authored_date, timezone.utc).isoformat()
    return {"author": raw.author.name or "", "date": date, "message": message_of(commit).rstrip()}
