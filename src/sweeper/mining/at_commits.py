"""The 14 change metrics of chosen commits of a clone, as `sweeper data from-git` computes them: what
`sweeper predict --repo` scores.

    found = commit_records(Path("."), ["main..feature"])
    found.records[0].features["exp"], found.notes

The history before the commits is replayed with the miner's own code (its walk over every ref, its commit-date
order, each commit's file changes, `History`, the fix rule), so a commit gets the values a `from-git` data file made
with the default options gives it. Only the history up to the newest commit asked for is read, and each commit's
file changes are kept in a state file (`from-git`'s format) under `$SWEEPER_CACHE/commit-metrics`, one per clone:
the first run on a clone reads its history once (commons-lang's 10,215 commits: 112 s on a busy 2-core machine),
later runs only what is new (then 9 s for the metrics of HEAD~5..HEAD there, most of it walking the refs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from filelock import FileLock

from sweeper.cache import digest
from sweeper.folders import cache_dir
from sweeper.data.records import CommitRecord
from sweeper.errors import SweeperError
from sweeper.mining import commits as walking
from sweeper.mining.change_metrics import History
from sweeper.mining.filters import diff_reason
from sweeper.mining.gitcli import clean_git_environment, git, git_dir, show_diffs
from sweeper.mining.miner import MiningOptions, read_changes
from sweeper.mining.state import MiningState
from sweeper.mining.szz import FixDetector

STATE_FOLDER = "commit-metrics"


@dataclass
class CommitsFound:
    """Records (id = the commit's sha, with `features`) of the commits that can be scored, in the order asked,
    a note for each one left out, and how much history was read."""

    records: list[CommitRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    history_commits: int = 0
    reused: dict[str, int] = field(default_factory=lambda: {"commits": 0, "blames": 0})


def resolve_revisions(repo: Path, revisions: Sequence[str]) -> list[str]:
    """The commits REV arguments name, in the order given, each once: a range (`A..B`, `A...B`) every commit of it,
    oldest first; anything else the one commit it names (`HEAD`, a sha, a branch, `HEAD~2`)."""
    shas: list[str] = []
    for revision in revisions:
        if ".." in revision:
            try:
                listed = git(repo, "rev-list", "--reverse", revision, "--").decode().split()
            except SweeperError:
                raise SweeperError(f"{repo}: unknown range '{revision}' (give A..B with A and B branches, tags or "
                                   "commits, e.g. origin/main..HEAD)") from None
        else:
            listed = [walking.resolve_branch(repo, revision)]
        shas += [sha for sha in listed if sha not in shas]
    return shas


def check_full_history(repo: Path) -> None:
    """A shallow clone lacks the history the metrics count (CI checkouts are often shallow): refuse, saying how."""
    if git(repo, "rev-parse", "--is-shallow-repository").strip() == b"true":
        raise SweeperError(f"{repo}: a shallow clone: the change metrics count the whole history; fetch it with "
                           "`git fetch --unshallow` (in GitHub Actions: actions/checkout with fetch-depth: 0)")


def state_file(repo: Path) -> Path:
    """The clone's state file under $SWEEPER_CACHE, named by its git directory."""
    return cache_dir() / STATE_FOLDER / f"{digest({'git_dir': str(git_dir(repo))})}.state.jsonl"


def commit_records(repo: Path, revisions: Sequence[str], quiet: bool = False) -> CommitsFound:
    """The commits `revisions` name, with their message, date, diff and 14 change metrics (see the module)."""
    repo = walking.check_repository(repo)
    check_full_history(repo)
    shas = resolve_revisions(repo, revisions)
    found = CommitsFound()
    if not shas:
        found.notes.append(f"no commits in {' '.join(revisions)}")
        return found
    with clean_git_environment():
        walked: dict[str, Any] = {}
        for sha in shas:  # every ref, as from-git's default --history all, and commits on no ref
            if sha not in walked:
                walked.update((c.hash, c) for c in walking.walk(repo, sha, True))
        history = walking.in_history_order(walked.values(), "commit")
        position = {c.hash: index for index, c in enumerate(history)}
        needed = history[:max(position[sha] for sha in shas) + 1]
        found.history_commits = len(needed)
        changes = read_history(repo, needed, found.reused, quiet)
        wanted = set(shas)
        detector = FixDetector()
        metrics = History()
        features: dict[str, dict[str, float]] = {}
        for commit in needed:
            change = changes[commit.hash]
            if commit.hash in wanted and not commit.merge and metrics.code_files(change):
                features[commit.hash] = metrics.features(change, detector.is_fix(commit.hash,
                                                                                walking.message_of(commit)))
            metrics.add(change)
        diffs = dict(show_diffs(repo, [sha for sha in shas if not walked[sha].merge]))
        for sha in shas:
            reason = left_out(walked[sha], diffs.get(sha, ""), sha in features)
            if reason:
                found.notes.append(f"commit {sha[:12]}: {reason}: not scored (`sweeper data from-git` leaves such "
                                   "commits out of the training data too)")
            else:
                fields = walking.record_fields(walked[sha])
                found.records.append(CommitRecord(sha, datetime.fromisoformat(fields["date"]), fields["message"],
                                                  diffs[sha], repo.name.removesuffix(".git"),
                                                  features=features[sha]))
    return found


def read_history(repo: Path, commits: list[Any], reused: dict[str, int], quiet: bool) -> dict[str, walking.Change]:
    """Each commit's file changes, through the clone's state file (locked: two runs on one clone take turns)."""
    path = state_file(repo)
    path.parent.mkdir(parents=True, exist_ok=True)
    roots = git(repo, "rev-list", "--max-parents=0", "--all").decode().split()
    with FileLock(str(path) + ".lock"):
        state = MiningState(path, {"path": str(git_dir(repo)), "roots": sorted(roots)}, {})
        new = sum(1 for commit in commits if commit.hash not in state.changes)
        options = MiningOptions(repo=repo, task="jitdp", out=path, quiet=quiet or new < 500)  # progress on long reads
        try:
            return read_changes(commits, state, reused, options)
        finally:
            state.close()


def left_out(commit: Any, diff: str, has_metrics: bool) -> str | None:
    """Why from-git would not keep this commit: a merge, an empty or binary-only diff, no source file."""
    if commit.merge:
        return "a merge commit"
    reason = diff_reason(diff)
    if reason:
        return reason.replace("-", " ")
    return None if has_metrics else "changes no source file"
