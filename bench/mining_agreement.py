"""How far `sweeper data from-git` agrees with the shared data files on a project both hold.

jitdp: mines a local clone of one JIT-Defects4J project (e.g. `apache/commons-codec`) over the dates the shared
file has for it (the history before them still counts), then compares, on the commits both hold: the share
of exactly equal values of each of the 14 change metrics and their Spearman rank correlation, and our SZZ
labels against the shared ones (confusion counts, precision / recall / F1 of "defect-inducing"). It also
prints how long after an inducing commit its fix came (what `--settle-days` must cover) and, with
`--pydriller`, the labels PyDriller's own `Git.get_commits_last_modified_lines` gives on the same fix commits
(SZZ without our hygiene).

    git clone /work/.mirror/apache+commons-codec/repo /tmp/commons-codec
    python bench/mining_agreement.py /tmp/commons-codec ../shared/data/jitdp/jit-defects4j-a.jsonl.gz
    python bench/mining_agreement.py /tmp/commons-codec SHARED --history branch   # history of master only
    python bench/mining_agreement.py /tmp/commons-codec SHARED --pydriller        # + plain PyDriller SZZ
    python bench/mining_agreement.py /tmp/commons-codec SHARED --quick            # 300 commits of the period
    python bench/mining_agreement.py /tmp/commons-codec SHARED --work /tmp/codec  # keep the output and state
    python bench/mining_agreement.py /tmp/commons-codec SHARED --work /tmp/codec \
        --history-order author --package-info --sexp-first-commit all   # the rules before JIT-Defects4J's
    python bench/mining_agreement.py /tmp/click ../shared/data/cmg/python-commits.jsonl.gz --task cmg \
        --branch 2c8cd3ac958a                                                     # commit/message pairs

The shared labels come from JIT-Defects4J's own SZZ run on bug fixes linked by hand to JIRA bug reports
(LLTC4J), with only the lines people marked as the fix blamed; ours find fixes by message keywords. Expect the
metrics to agree and the labels to agree far less.

cmg (`--task cmg`): mines a clone of `pallets/click`, `pallets/flask` or `psf/requests` at the snapshot the shared
CMG file names and compares which commits each keeps, and their date, message and diff.
"""

from __future__ import annotations

import gzip
import json
import math
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import common
from scipy.stats import spearmanr

from sweeper.data.features import FEATURE_NAMES
from sweeper.mining.gitcli import clean_git_environment, git
from sweeper.mining.miner import MiningOptions, mine
from sweeper.mining.state import state_path
from sweeper.mining.szz import DEFAULT_FIX_PATTERN, DEFAULT_NOT_FIX_PATTERN


def main() -> None:
    args = common.parser(__doc__.splitlines()[0])
    args.add_argument("repo", type=Path, help="local clone of the project")
    args.add_argument("shared", type=Path, help="the shared file (jitdp or cmg)")
    args.add_argument("--task", choices=("jitdp", "cmg"), default="jitdp")
    args.add_argument("--project", help="project name in the shared file (default: the clone's folder name)")
    args.add_argument("--branch", help="cmg: the snapshot the shared file was built from (its README names it)")
    args.add_argument("--history", choices=("all", "branch"), default="all")
    args.add_argument("--fix-pattern", default=DEFAULT_FIX_PATTERN)
    args.add_argument("--not-fix-pattern", default=DEFAULT_NOT_FIX_PATTERN)
    args.add_argument("--issue-pattern")
    args.add_argument("--szz-tests", action="store_true")
    args.add_argument("--pydriller", action="store_true", help="also label with PyDriller's plain SZZ")
    args.add_argument("--history-order", choices=("commit", "author"), default="commit")
    args.add_argument("--package-info", action="store_true", help="count package-info.java files in the metrics")
    args.add_argument("--sexp-first-commit", choices=("last-file", "all"), default="last-file")
    args.add_argument("--work", type=Path, help="folder for the mined file and its state, kept (a re-run with other "
                                               "metric rules reuses the commits read and the blames)")
    options = args.parse_args()
    project = options.project or options.repo.resolve().name
    shared = {row["commit"]: row for row in read_jsonl(options.shared) if row["project"] == project}
    if not shared:
        sys.exit(f"{options.shared}: no rows of project {project!r} (use --project)")
    with tempfile.TemporaryDirectory() as folder:  # fresh: a state file from other options holds other fixes' blames
        if options.work:
            options.work.mkdir(parents=True, exist_ok=True)
        out = (options.work or Path(folder)) / f"{project}.jsonl.gz"
        title, settings, sections = (jitdp(options, project, shared, out) if options.task == "jitdp"
                                     else cmg(options, project, shared, out))
    common.print_report(title, settings, sections)


def jitdp(options: Any, project: str, shared: dict[str, Any], out: Path) -> tuple[str, dict, list]:
    """Mine the shared file's period (the history before it still counts); compare fields, metrics, labels."""
    since = min(datetime.fromisoformat(row["date"]) for row in shared.values()) - timedelta(days=1)
    until = max(datetime.fromisoformat(row["date"]) for row in shared.values()) + timedelta(days=1)
    print(f"mining {options.repo} from {since.date()} to {until.date()} into {out}", file=sys.stderr)
    started = time.monotonic()
    summary = mine(MiningOptions(repo=options.repo, task="jitdp", out=out, project=project, since=since, until=until,
                                 branch=options.branch, max_commits=300 if options.quick else None,
                                 history=options.history, history_order=options.history_order,
                                 package_info=options.package_info,
                                 first_subsystems=options.sexp_first_commit == "all", fix_pattern=options.fix_pattern,
                                 not_fix_pattern=options.not_fix_pattern, issue_pattern=options.issue_pattern,
                                 szz_tests=options.szz_tests, progress_every=1000))
    seconds = time.monotonic() - started
    mined = {row["commit"]: row for row in read_jsonl(out)}
    blames = read_blames(state_path(out))
    sections = compare(shared, mined)
    sections.append(fix_delays(options.repo, blames))
    if options.pydriller:
        sections.append(pydriller_labels(options.repo, blames, shared, mined))
    settings = {"repo": str(options.repo), "project": project, "period": f"{since.date()} to {until.date()}",
                "history": options.history, "history order": options.history_order,
                "package-info.java counted": options.package_info,
                "sexp first commit": options.sexp_first_commit, "fix pattern": options.fix_pattern,
                "not-fix pattern": options.not_fix_pattern, "issue pattern": options.issue_pattern,
                "szz tests": options.szz_tests, "mining seconds": round(seconds, 1),
                "commits read": summary["commits_read"], "kept": summary["kept"], "dropped": summary["dropped"],
                "labels": summary["labels"], "fix commits": summary["fix_commits"], "shared rows": len(shared),
                "shared rows mined": len(shared.keys() & mined.keys())}
    return f"mining agreement: {project} (jitdp)", settings, sections


def cmg(options: Any, project: str, shared: dict[str, Any], out: Path) -> tuple[str, dict, list]:
    """Mine the snapshot; compare which commits are kept and their fields; the drops by reason."""
    started = time.monotonic()
    summary = mine(MiningOptions(repo=options.repo, task="cmg", out=out, project=project, branch=options.branch,
                                 max_commits=300 if options.quick else None, progress_every=1000))
    seconds = time.monotonic() - started
    mined = {row["commit"]: row for row in read_jsonl(out)}
    both = sorted(shared.keys() & mined.keys())
    only_ours = sorted(mined.keys() - shared.keys())
    first_lines = [git(options.repo, "show", "-s", "--format=%s", sha).decode().strip() for sha in only_ours]
    settings = {"repo": str(options.repo), "project": project, "branch": options.branch or "HEAD",
                "mining seconds": round(seconds, 1), "commits read": summary["commits_read"],
                "kept": summary["kept"], "dropped": summary["dropped"]}
    kept = [("both", len(both)), ("shared only", len(shared.keys() - mined.keys())), ("ours only", len(only_ours))]
    sections = [("kept commits", ("", "commits"), kept),
                fields_section(shared, mined, both),
                ("first lines of the commits only we keep", ("first line",), [(line,) for line in first_lines])]
    return f"mining agreement: {project} (cmg)", settings, sections


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def read_blames(path: Path) -> dict[str, list[str]]:
    """fix sha -> the commits it blames, from the miner's state file."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[1:]]
    return {row["blame"]: row["inducing"] for row in rows if "blame" in row}


def compare(shared: dict[str, Any], mined: dict[str, Any]) -> list[tuple[str, tuple, list]]:
    """Per-metric agreement and the label confusion on the commits both hold."""
    common_shas = sorted(shared.keys() & mined.keys())
    metric_rows = []
    for name in FEATURE_NAMES:
        ours = [float(mined[sha]["features"][name]) for sha in common_shas]
        theirs = [float(shared[sha]["features"][name]) for sha in common_shas]
        exact = sum(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9) for a, b in zip(ours, theirs)) / len(ours)
        rho = spearmanr(ours, theirs)[0] if len(set(ours)) > 1 and len(set(theirs)) > 1 else float("nan")
        metric_rows.append((name, f"{exact:.1%}", "n/a" if math.isnan(rho) else f"{rho:.3f}"))
    return [fields_section(shared, mined, common_shas),
            (f"change metrics on the {len(common_shas)} commits both hold", ("metric", "exact", "spearman"),
             metric_rows),
            label_section("SZZ labels: ours against the shared labels (positive = defect-inducing)",
                          [mined[sha]["label"] for sha in common_shas], [shared[sha]["label"] for sha in common_shas])]


def fields_section(shared: dict[str, Any], mined: dict[str, Any], shas: list[str]) -> tuple[str, tuple, list]:
    """Equal date, message and diff (the shared file cuts diffs after 400 lines: compared up to the cut)."""
    def same_diff(ours: str, theirs: str) -> bool:
        cut = "[diff truncated]\n"
        if theirs.endswith(cut):
            return "".join(ours.splitlines(keepends=True)[:400]) == theirs[:-len(cut)]
        return ours == theirs

    rows = [(name, f"{sum(test(mined[sha][name], shared[sha][name]) for sha in shas) / len(shas):.1%}")
            for name, test in (("date", str.__eq__), ("message", str.__eq__), ("diff", same_diff))]
    return ("record fields equal to the shared file's", ("field", "equal"), rows)


def label_section(heading: str, ours: list[int], theirs: list[int]) -> tuple[str, tuple, list]:
    tp = sum(a and b for a, b in zip(ours, theirs))
    fp = sum(a and not b for a, b in zip(ours, theirs))
    fn = sum(b and not a for a, b in zip(ours, theirs))
    tn = len(ours) - tp - fp - fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return (heading, ("tp", "fp", "fn", "tn", "precision", "recall", "f1", "agreement"),
            [(tp, fp, fn, tn, round(precision, 3), round(recall, 3), round(f1, 3), f"{(tp + tn) / len(ours):.1%}")])


def fix_delays(repo: Path, blames: dict[str, list[str]]) -> tuple[str, tuple, list]:
    """Share of inducing commits whose first blaming fix came within N days: what --settle-days covers."""
    times = dict(line.split() for line in git(repo, "log", "--all", "--format=%H %at").decode().splitlines())
    first: dict[str, float] = {}
    for fix, shas in blames.items():
        for sha in shas:
            first[sha] = min(first.get(sha, math.inf), (int(times[fix]) - int(times[sha])) / 86400)
    rows = [(days, f"{sum(d <= days for d in first.values()) / max(len(first), 1):.0%}")
            for days in (30, 90, 180, 365, 730, 1095)]
    return (f"inducing commits ({len(first)}) found by a fix within N days", ("days", "found"), rows)


def pydriller_labels(repo: Path, blames: dict[str, list[str]], shared: dict[str, Any],
                     mined: dict[str, Any]) -> tuple[str, tuple, list]:
    """Labels from PyDriller's get_commits_last_modified_lines on the same fix commits, for comparison."""
    from pydriller import Git

    inducing: set[str] = set()
    started = time.monotonic()
    with clean_git_environment():
        pydriller_git = Git(str(repo))
        for fix in blames:
            for shas in pydriller_git.get_commits_last_modified_lines(pydriller_git.get_commit(fix)).values():
                inducing |= shas
    print(f"PyDriller SZZ on {len(blames)} fixes: {time.monotonic() - started:.0f} s", file=sys.stderr)
    common_shas = sorted(shared.keys() & mined.keys())
    return label_section("SZZ labels: PyDriller's get_commits_last_modified_lines on the same fixes, "
                         "against the shared",
                         [int(sha in inducing) for sha in common_shas], [shared[sha]["label"] for sha in common_shas])


if __name__ == "__main__":
    main()
