"""`sweeper data from-git`: the command line of the miner."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, time, timezone
from pathlib import Path
from typing import Any

from sweeper.errors import SweeperError

RESTART_HELP = """\
Restarting: finished work is kept in OUT.state.jsonl next to the output, appended as it finishes: each
commit's file changes (what the metrics are computed from) and each fix commit's SZZ blame. Run the same
command again after an interruption (or with a later --until, or on a clone that has new commits) and it
reuses them, reading and blaming only what is new; the summary's "reused" counts them. Other fix rules
(--fix-pattern, --issue-pattern, ...) reuse the blames of the fixes already blamed; other blame rules
(--extensions, --szz-tests, --ignore-revs) keep the commits and redo the blames; another repository starts
the file afresh. Delete it to start from scratch."""


def add_data_command(commands: Any) -> None:
    """Register `data` (with its `from-git` sub-command) on the CLI's sub-parsers."""
    from sweeper.mining.miner import DEFAULT_SETTLE_DAYS
    from sweeper.mining.szz import DEFAULT_FIX_PATTERN, DEFAULT_NOT_FIX_PATTERN

    data = commands.add_parser("data", help="make data files (JSONL in the format sweeper reads)")
    kinds = data.add_subparsers(required=True, metavar="SOURCE")
    mine = kinds.add_parser(
        "from-git", help="mine a local git clone with PyDriller: jitdp (SZZ labels, 14 change metrics) or cmg",
        description="Mine a local git clone into a JSONL data file in the format sweeper reads.\n"
                    "jitdp: SZZ labels and the 14 Kamei change metrics as JIT-Defects4J computes them;\n"
                    "cmg: commit/message pairs filtered like the shared CMG data.\n"
                    "(PyDriller sets blame.markUnblamableLines in the clone's .git/config when it opens it.)",
        epilog=RESTART_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    mine.add_argument("repo", type=Path, help="path of a local git clone")
    mine.add_argument("--task", required=True, choices=("jitdp", "cmg"))
    mine.add_argument("--out", required=True, type=Path, help="output file (.jsonl, or .jsonl.gz for gzip)")
    mine.add_argument("--project", help="the records' project name (default: the clone's folder name, less .git)")
    mine.add_argument("--branch", help="branch or revision to mine (default: HEAD)")
    mine.add_argument("--since", help="first author date to write (YYYY-MM-DD or ISO-8601)")
    mine.add_argument("--until", help="last author date to write (a bare date includes that day)")
    mine.add_argument("--max-commits", type=positive, help="read at most N commits of the period, oldest first")
    mine.add_argument("--max-diff-lines", type=positive, default=400,
                      help="cmg: drop (not truncate) diffs longer than this (default 400)")
    mine.add_argument("--extensions", help="source-file extensions for the metrics and SZZ, e.g. java,kt "
                                           "(default: common programming languages)")
    szz = mine.add_argument_group("jitdp labels (SZZ) and history")
    szz.add_argument("--fix-pattern", default=DEFAULT_FIX_PATTERN,
                     help=f"regex (case-insensitive) on messages marking bug fixes, '' for none "
                          f"(default {DEFAULT_FIX_PATTERN})")
    szz.add_argument("--issue-pattern", help=r"regex of issue references a fix must also carry, e.g. 'CODEC-\d+' "
                                             "(with --fix-pattern '' issue references alone mark fixes)")
    szz.add_argument("--not-fix-pattern", default=DEFAULT_NOT_FIX_PATTERN,
                     help="regex on a fix's first line that keeps SZZ from blaming it (style, docs, warnings); "
                          f"'' for none (default {DEFAULT_NOT_FIX_PATTERN})")
    szz.add_argument("--fix-commits", type=Path,
                     help="file of fix commit shas (one a line), fixes whatever their message")
    szz.add_argument("--ignore-revs", type=Path,
                     help="commits git blame looks through (default: the clone's .git-blame-ignore-revs)")
    szz.add_argument("--szz-tests", action="store_true", help="also blame lines fixes delete in test files")
    szz.add_argument("--settle-days", type=float, default=DEFAULT_SETTLE_DAYS,
                     help=f"leave out commits this close to the branch's newest one: their bugs may not be found "
                          f"yet (default {DEFAULT_SETTLE_DAYS:g})")
    szz.add_argument("--history", choices=("all", "branch"), default="all",
                     help="commits the history metrics count: every ref, as JIT-Defects4J (default), or the branch's")
    szz.add_argument("--history-order", choices=("commit", "author"), default="commit",
                     help="the order the history metrics replay commits in: commit date, as JIT-Defects4J (default), "
                          "or author date")
    szz.add_argument("--sexp-first-commit", choices=("last-file", "all"), default="last-file",
                     help="sexp: an author's first commit counts in the subsystem of its last file, as JIT-Defects4J "
                          "(default), or in each subsystem it touched")
    mine.add_argument("--package-info", action="store_true",
                      help="count package-info.java files in the change metrics (JIT-Defects4J leaves them out)")
    mine.add_argument("--progress-every", type=positive, default=500, help="a progress line every N commits")
    mine.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    mine.set_defaults(command=cmd_data_from_git)


def cmd_data_from_git(args: argparse.Namespace) -> int:
    from sweeper.mining.miner import MiningOptions, mine
    from sweeper.mining.paths import CODE_EXTENSIONS, parse_extensions

    extensions = parse_extensions(args.extensions) if args.extensions is not None else CODE_EXTENSIONS
    if not extensions:
        raise SweeperError("--extensions: name at least one extension, e.g. java")
    summary = mine(MiningOptions(
        repo=args.repo, task=args.task, out=args.out, project=args.project, branch=args.branch,
        since=parse_date(args.since, "--since"), until=parse_date(args.until, "--until", end_of_day=True),
        max_commits=args.max_commits, max_diff_lines=args.max_diff_lines,
        history=args.history, history_order=args.history_order, package_info=args.package_info,
        first_subsystems=args.sexp_first_commit == "all",
        extensions=extensions, fix_pattern=args.fix_pattern,
        issue_pattern=args.issue_pattern, not_fix_pattern=args.not_fix_pattern,
        fix_commits=args.fix_commits, ignore_revs=args.ignore_revs,
        szz_tests=args.szz_tests, settle_days=args.settle_days, progress_every=args.progress_every))
    print(json.dumps(summary) if args.json else describe(summary))
    return 0


def describe(summary: dict[str, Any]) -> str:
    """The summary as a few readable lines."""
    dropped = ", ".join(f"{reason} {n}" for reason, n in summary["dropped"].items()) or "none"
    lines = [f"{summary['out']}: {summary['kept']} of {summary['commits_read']} commits kept "
             f"({summary['task']}, {summary['project']}, {summary['seconds']} s)",
             f"  dropped: {dropped}"]
    if summary["task"] == "jitdp":
        labels, reused = summary["labels"], summary["reused"]
        share = labels["defect_inducing"] / max(summary["kept"], 1)
        lines += [f"  labels: {labels['defect_inducing']} defect-inducing ({share:.1%}), {labels['clean']} clean; "
                  f"{summary['fix_commits']} fix commits blamed {summary['inducing_commits']} commits",
                  f"  settle window: {summary['unsettled']} commits of the last {summary['settle_days']:g} days "
                  "left out",
                  f"  reused from the state file: {reused['commits']} commits, {reused['blames']} blames"]
    return "\n".join(lines)


def parse_date(text: str | None, option: str, end_of_day: bool = False) -> datetime | None:
    """YYYY-MM-DD (UTC) or a full ISO-8601 time; a bare date with `end_of_day` means its last second."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise SweeperError(f"{option}: not a date: {text!r} (use YYYY-MM-DD or ISO-8601, e.g. 2014-12-31)") from None
    if end_of_day and len(text.strip()) == 10:
        value = datetime.combine(value.date(), time(23, 59, 59))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number above 0, got {text!r}")
    return value
