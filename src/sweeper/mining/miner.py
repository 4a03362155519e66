"""Mining one clone into a data file: walk, filter, compute metrics and SZZ labels, write, summarise.

    summary = mine(MiningOptions(repo=Path("commons-codec"), task="jitdp", out=Path("codec.jsonl.gz")))
    summary["labels"]  # {"defect_inducing": ..., "clean": ...}
"""

from __future__ import annotations

import gzip
import json
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from sweeper.errors import SweeperError
from sweeper.mining import commits as walking
from sweeper.mining.change_metrics import DAY, History
from sweeper.mining.filters import diff_reason, message_reason
from sweeper.mining.gitcli import clean_git_environment, git, show_diffs
from sweeper.mining.paths import CODE_EXTENSIONS
from sweeper.mining.progress import MiningProgress
from sweeper.mining.state import MiningState, state_path
from sweeper.mining.szz import (DEFAULT_FIX_PATTERN, DEFAULT_NOT_FIX_PATTERN, FixDetector, Hygiene, blame_fix,
                                read_fix_commits, read_ignore_revs)

TASKS = ("jitdp", "cmg")
# Commits younger than this (counted back from the branch's newest commit) are left out of `jitdp`: their bugs
# may not be found yet, so a 0 there is often "not yet". Of the commits SZZ blames in commons-codec and
# commons-io over JIT-Defects4J's period, a fix had come within a year for 40 % and 41 % (two years: 53 % and
# 59 %; bench/mining_agreement.py prints this for any project): no window settles every label. A year leaves
# out the stretch where a 0 is most often wrong and keeps the rest; raise it for slow-moving projects.
DEFAULT_SETTLE_DAYS = 365.0


@dataclass
class MiningOptions:
    """Everything `sweeper data from-git` takes (see `command.py` for what each option means)."""

    repo: Path
    task: str
    out: Path
    project: str | None = None
    branch: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    max_commits: int | None = None
    max_diff_lines: int = 400
    history: str = "all"
    history_order: str = "commit"
    package_info: bool = False
    first_subsystems: bool = False
    extensions: frozenset[str] = CODE_EXTENSIONS
    fix_pattern: str | None = DEFAULT_FIX_PATTERN
    issue_pattern: str | None = None
    not_fix_pattern: str | None = DEFAULT_NOT_FIX_PATTERN
    fix_commits: Path | None = None
    ignore_revs: Path | None = None
    szz_tests: bool = False
    settle_days: float = DEFAULT_SETTLE_DAYS
    progress_every: int = 500
    quiet: bool = False


def mine(options: MiningOptions) -> dict[str, Any]:
    """Write the data file and return the summary (also what `--json` prints)."""
    started = time.monotonic()
    if options.task not in TASKS:
        raise SweeperError(f"--task: unknown task '{options.task}' (choose jitdp or cmg)")
    if options.since and options.until and options.since > options.until:
        raise SweeperError(f"--since {options.since.date()} is after --until {options.until.date()}")
    repo = walking.check_repository(options.repo)
    check_writable(options.out)
    tip = walking.resolve_branch(repo, options.branch)
    project = options.project or repo.name.removesuffix(".git")
    rules = fix_rules(repo, options) if options.task == "jitdp" else None
    with clean_git_environment():
        on_branch = set(walking.branch_shas(repo, tip))
        all_refs = options.task == "jitdp" and options.history == "all"
        order = options.history_order if options.task == "jitdp" else "author"  # cmg writes by author date
        history = walking.in_history_order(walking.walk(repo, tip, all_refs), order)
        branch = [c for c in history if c.hash in on_branch]
        window = [c for c in branch if in_window(walking.author_time(c), options)][:options.max_commits]
        summary: dict[str, Any] = {"repo": str(repo), "task": options.task, "project": project,
                                   "branch": options.branch or "HEAD", "out": str(options.out),
                                   "commits_read": len(window)}
        counts: Counter[str] = Counter()
        if rules is None:
            records = cmg_records(repo, project, window, options, counts)
        else:
            records = jitdp_records(repo, project, history, branch, window, options, rules, counts, summary)
        summary["kept"] = write_records(options.out, records)
    summary["dropped"] = dict(sorted((key, n) for key, n in counts.items() if key != "defect_inducing"))
    if options.task == "jitdp":
        summary["labels"] = {"defect_inducing": counts["defect_inducing"],
                             "clean": summary["kept"] - counts["defect_inducing"]}
        summary["unsettled"] = counts["unsettled"]
    summary["seconds"] = round(time.monotonic() - started, 1)
    return summary


def in_window(when: int, options: MiningOptions) -> bool:
    return ((options.since is None or when >= options.since.timestamp())
            and (options.until is None or when <= options.until.timestamp()))


def check_writable(out: Path) -> None:
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise SweeperError(f"--out {out}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise SweeperError(f"--out {out}: not writable")


class SzzRules(NamedTuple):
    """Which commits are fixes, and what SZZ leaves unblamed."""

    detector: FixDetector
    hygiene: Hygiene


def fix_rules(repo: Path, options: MiningOptions) -> SzzRules:
    """The SZZ rules of the options, checked (patterns, files) before the long walk starts."""
    ignore = read_ignore_revs(repo, options.ignore_revs)
    shas = read_fix_commits(options.fix_commits, repo) if options.fix_commits else frozenset()
    return SzzRules(FixDetector(options.fix_pattern, options.issue_pattern, shas, options.not_fix_pattern),
                    Hygiene(options.extensions, options.szz_tests, ignore.ignore_revs_file, ignore.ignored))


def cmg_records(repo: Path, project: str, window: list[Any], options: MiningOptions,
                counts: Counter[str]) -> Iterator[dict[str, Any]]:
    """Commit/message pairs under the shared CMG file's rules, oldest first; each drop counted by reason."""
    fields = {c.hash: walking.record_fields(c) for c in window}
    reasons = {c.hash: "merge-commit" if c.merge else message_reason(fields[c.hash]["message"],
                                                                      fields[c.hash]["author"]) for c in window}
    progress = MiningProgress("reading diffs", len(window), options.progress_every, options.quiet)
    for sha, diff in show_diffs(repo, [c.hash for c in window if reasons[c.hash] is None]):
        progress.tick()
        reason = diff_reason(diff, options.max_diff_lines)
        if reason is None:
            yield record(project, sha, fields[sha], diff)
        else:
            counts[reason] += 1
    counts.update(reason for reason in reasons.values() if reason)
    progress.done()


def jitdp_records(repo: Path, project: str, history: list[Any], branch: list[Any], window: list[Any],
                  options: MiningOptions, rules: SzzRules, counts: Counter[str],
                  summary: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Commits with SZZ labels and the 14 change metrics, oldest first; fills the summary's jitdp figures."""
    detector, hygiene = rules
    roots = git(repo, "rev-list", "--max-parents=0", "--all").decode().split()
    state = MiningState(state_path(options.out), {"path": str(repo), "roots": sorted(roots)}, hygiene.key())
    reused = {"commits": 0, "blames": 0}
    try:
        needed = history[:history.index(window[-1]) + 1] if window else []
        changes = read_changes(needed, state, reused, options)
        first = walking.author_time(window[0]) if window else None
        fixes = [c for c in branch if first is not None and walking.author_time(c) >= first and not c.merge
                 and detector.fixes_defect(c.hash, walking.message_of(c))]
        inducing = blame_fixes(repo, fixes, hygiene, state, reused, options)
    finally:
        state.close()
    summary.update({"history": options.history, "history_commits": len(needed), "fix_commits": len(fixes),
                    "inducing_commits": len(inducing), "settle_days": options.settle_days, "reused": reused})
    settled_until = max((walking.author_time(c) for c in branch), default=0) - options.settle_days * DAY
    wanted = {c.hash for c in window}
    for commit in window:
        if commit.merge or changes[commit.hash].time > settled_until:
            counts["merge-commit" if commit.merge else "unsettled"] += 1
            wanted.discard(commit.hash)
    diffs = show_diffs(repo, [c.hash for c in window if c.hash in wanted])
    metrics = History(options.extensions, options.package_info, options.first_subsystems)
    progress = MiningProgress("computing metrics", len(wanted), options.progress_every, options.quiet)
    for commit in needed:
        change = changes[commit.hash]
        if commit.hash in wanted:
            progress.tick()
            sha, diff = next(diffs)
            reason = diff_reason(diff) or (None if metrics.code_files(change) else "no-source-file")
            if reason:
                counts[reason] += 1
            else:
                features = metrics.features(change, detector.is_fix(sha, walking.message_of(commit)))
                label = int(sha in inducing)
                counts["defect_inducing"] += label
                yield {**record(project, sha, walking.record_fields(commit), diff), "label": label,
                       "features": features}
        metrics.add(change)
    progress.done()


def read_changes(commits: list[Any], state: MiningState, reused: dict[str, int],
                 options: MiningOptions) -> dict[str, walking.Change]:
    """Each commit's file changes, from the state file when an earlier run read them."""
    changes = {}
    progress = MiningProgress("reading commits", len(commits), options.progress_every, options.quiet)
    for commit in commits:
        progress.tick()
        change = state.changes.get(commit.hash)
        if change is None:
            change = walking.change_of(commit)
            state.add_change(change)
        else:
            reused["commits"] += 1
        changes[commit.hash] = change
    progress.done()
    return changes


def blame_fixes(repo: Path, fixes: list[Any], hygiene: Hygiene, state: MiningState, reused: dict[str, int],
                options: MiningOptions) -> set[str]:
    """The union of the commits every fix blames (SZZ), from the state file when already done."""
    inducing: set[str] = set()
    progress = MiningProgress("blaming fix commits", len(fixes), max(options.progress_every // 5, 1), options.quiet)
    for fix in fixes:
        progress.tick()
        found = state.blames.get(fix.hash)
        if found is None:
            found = frozenset(blame_fix(repo, fix, hygiene))
            state.add_blame(fix.hash, set(found))
        else:
            reused["blames"] += 1
        inducing |= found
    progress.done()
    return inducing


def record(project: str, sha: str, fields: dict[str, str], diff: str) -> dict[str, Any]:
    """The keys every record starts with, in the data format's order."""
    return {"id": f"{project}@{sha}", "project": project, "commit": sha, "date": fields["date"],
            "message": fields["message"], "diff": diff}


def write_records(out: Path, records: Iterable[dict[str, Any]]) -> int:
    """JSON Lines, gzip when the name ends in .gz (no timestamp inside, so equal data gives equal bytes),
    written as the records come to a temporary file that takes the name at the end (an interrupted run never
    leaves half a file under it). Returns how many records were written."""
    temporary = out.with_name(out.name + ".partial")
    written = 0
    try:
        with temporary.open("wb") as raw:
            stream = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if out.name.endswith(".gz") else raw
            for row in records:
                stream.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
                written += 1
            if stream is not raw:
                stream.close()
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, out)
    return written
