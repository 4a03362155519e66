"""SZZ: which commits a bug fix blames, and which commits are bug fixes.

A fix deletes or changes lines; the commits that last touched those lines before the fix are its
defect-inducing commits (Sliwerski, Zimmermann and Zeller, 2005). PyDriller's
`Git.get_commits_last_modified_lines` is that algorithm: for each file of the fix it runs
`git blame -w <fix>^ -- <path>` (changes of whitespace alone are seen through), drops deleted lines that
are blank or start a comment (`//`, `/*`, `*`, `#`, `'''`, `\"\"\"`), honours an ignore-revs file
(`.git-blame-ignore-revs`, hyper-blame style) and skips lines git cannot blame past an ignored commit.
`blame_fix` runs the same blame with those same rules, on PyDriller's parsed diff of the fix, and adds
what that function cannot do:

- lines the fix only re-indents, re-wraps or moves (a deleted line whose text without whitespace is
  also added in the same file) are not blamed: they are not what the fix changed;
- only source files are blamed (a fix's edit of changes.xml or pom.xml says nothing about the code), and
  test files are skipped unless asked (a fix that adjusts a test does not make the test's author a culprit);
- git blames only the deleted lines (`-L`), not whole files, and reports full shas (`--line-porcelain`):
  commons-io's 562 fix commits take 14 s, against 94 s with `get_commits_last_modified_lines`.

Not handled: refactorings inside a fix other than moves (renamed methods, extracted code: RA-SZZ needs
RefactoringMiner), fixes that only add lines (nothing to blame), comment lines that do not start with a
marker (inside a block comment or a docstring: blamed like code), and the issue tracker (no bug-report
dates to check an inducing commit against, no issue types: fixes are found from messages, `FixDetector`).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeper.errors import SweeperError
from sweeper.mining.gitcli import git
from sweeper.mining.paths import CODE_EXTENSIONS, is_code, is_test

# Kamei-style fix keywords at the start of a word: fix/fixes/fixed/bugfix/hotfix, bug(s), defect(s),
# fail(s/ed/ure), wrong, problem. JIT-Defects4J's own `fix` flag is (before its JIRA filter) a keyword
# match on fix, bug, fail, wrong, problem; "patch" is left out: Apache commits "apply a patch" for features.
DEFAULT_FIX_PATTERN = r"\b((bug|hot)?fix|bug|defect|fail|wrong|problem)"
# Fixes of style, docs and tool warnings fix no defect: on a message's first line they keep SZZ from
# blaming (most of the commits keyword-SZZ wrongly blames in commons-codec came from "Fix checkstyle
# warnings", "Fix typos", "Fix Clirr error", "Fix PMD issues and Javadoc").
DEFAULT_NOT_FIX_PATTERN = (r"\b(typos?|spelling|checkstyle|pmd|findbugs|spotbugs|clirr|sonar|lint|javadocs?|docs?"
                           r"|documentation|comments?|whitespace|formatting|indentation|style|warnings?)\b")
COMMENT_STARTS = ("//", "#", "/*", "'''", '"""', "*")
HEADER = re.compile(r"^([0-9a-f]{40}) \d+ (\d+)")


class FixDetector:
    """Decides which commits are fixes: a keyword pattern on the message, an issue-reference pattern
    (both must match when both are given; give an empty keyword pattern for issue references alone), and
    a list of known fix shas that count whatever their message.

    `is_fix` is Kamei's FIX flag (a fix of anything, as JIT-Defects4J sets it); `fixes_defect` is what SZZ
    blames from: the same, less fixes whose first line matches the not-fix pattern (style, docs, warnings).
    Listed shas are defect fixes whatever their message."""

    def __init__(self, keywords: str | None = DEFAULT_FIX_PATTERN, issues: str | None = None,
                 shas: frozenset[str] = frozenset(), not_fix: str | None = DEFAULT_NOT_FIX_PATTERN) -> None:
        self.keywords = compile_pattern(keywords, "--fix-pattern")
        self.issues = compile_pattern(issues, "--issue-pattern", ignore_case=False)
        self.not_fix = compile_pattern(not_fix, "--not-fix-pattern")
        self.shas = shas

    def is_fix(self, sha: str, message: str) -> bool:
        if sha in self.shas:
            return True
        if self.keywords is None and self.issues is None:
            return False
        return all(pattern.search(message) for pattern in (self.keywords, self.issues) if pattern is not None)

    def fixes_defect(self, sha: str, message: str) -> bool:
        if sha in self.shas:
            return True
        first = message.strip().split("\n", 1)[0]
        return self.is_fix(sha, message) and not (self.not_fix and self.not_fix.search(first))


def compile_pattern(text: str | None, option: str, ignore_case: bool = True) -> re.Pattern[str] | None:
    if not text:
        return None
    try:
        return re.compile(text, re.IGNORECASE if ignore_case else 0)
    except re.error as error:
        raise SweeperError(f"{option}: not a valid regular expression: {error}") from None


def read_fix_commits(path: Path, repo: Path) -> frozenset[str]:
    """Full shas of a file listing fix commits (one per line, any unique prefix; `#` starts a comment)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise SweeperError(f"--fix-commits {path}: cannot read ({error.strerror})") from None
    return resolve_shas(repo, [line.split("#")[0].strip() for line in lines], f"--fix-commits {path}")


def resolve_shas(repo: Path, names: list[str], source: str) -> frozenset[str]:
    names = [name for name in names if name]
    if not names:
        return frozenset()
    try:
        return frozenset(git(repo, "rev-parse", *(f"{name}^{{commit}}" for name in names)).decode().split())
    except SweeperError:
        raise SweeperError(f"{source}: names a commit this repository does not have") from None


@dataclass(frozen=True)
class Hygiene:
    """What SZZ leaves unblamed (see the module docstring); part of the key of the blame cache."""

    extensions: frozenset[str] = CODE_EXTENSIONS
    include_tests: bool = False
    ignore_revs_file: Path | None = None
    ignored: frozenset[str] = frozenset()

    def key(self) -> dict[str, Any]:
        return {"extensions": sorted(self.extensions), "include_tests": self.include_tests,
                "ignored": sorted(self.ignored)}


def read_ignore_revs(repo: Path, path: Path | None) -> Hygiene:
    """Hygiene with the commits of an ignore-revs file (default: the clone's .git-blame-ignore-revs)."""
    if path is None:
        default = repo / ".git-blame-ignore-revs"
        if not default.is_file():
            return Hygiene()
        path = default
    try:
        names = [line.split("#")[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except OSError as error:
        raise SweeperError(f"--ignore-revs {path}: cannot read ({error.strerror})") from None
    return Hygiene(ignore_revs_file=path.resolve(), ignored=resolve_shas(repo, names, f"--ignore-revs {path}"))


def is_comment_or_blank(text: str) -> bool:
    """PyDriller's rule: a blank line or one starting a comment is not blamed."""
    stripped = text.strip()
    return not stripped or stripped.startswith(COMMENT_STARTS)


def squeeze(text: str) -> str:
    return "".join(text.split())


def lines_to_blame(modified_file: Any) -> list[int]:
    """Line numbers (in the file before the fix) of the deleted lines worth blaming."""
    parsed = modified_file.diff_parsed
    added = Counter(squeeze(text) for _, text in parsed["added"])
    keep = []
    for number, text in parsed["deleted"]:
        if is_comment_or_blank(text):
            continue
        if added[squeeze(text)] > 0:  # re-indented, re-wrapped or moved, not changed
            added[squeeze(text)] -= 1
            continue
        keep.append(number)
    return keep


def line_ranges(numbers: list[int]) -> list[str]:
    """[3, 4, 5, 9] -> ["-L", "3,5", "-L", "9,9"]."""
    args: list[str] = []
    start = previous = None
    for number in sorted(set(numbers)) + [None]:
        if start is not None and (number is None or number != previous + 1):
            args += ["-L", f"{start},{previous}"]
            start = None
        if number is not None and start is None:
            start = number
        previous = number
    return args


def blame_fix(repo: Path, fix: Any, hygiene: Hygiene) -> set[str]:
    """Commits that last touched the lines the PyDriller commit `fix` deletes or changes."""
    inducing: set[str] = set()
    if fix.merge or not fix.parents:
        return inducing
    for modified_file in fix.modified_files:
        path = modified_file.old_path
        if path is None or not is_code(path, hygiene.extensions) or (is_test(path) and not hygiene.include_tests):
            continue
        numbers = lines_to_blame(modified_file)
        if not numbers:
            continue
        args = ["blame", "-w", "--line-porcelain", *line_ranges(numbers)]
        if hygiene.ignore_revs_file is not None:
            args += ["--ignore-revs-file", str(hygiene.ignore_revs_file)]
        try:
            out = git(repo, *args, f"{fix.hash}^", "--", path)
        except SweeperError:  # the path is not in the parent (a rename git did not pair up): PyDriller skips it too
            continue
        wanted = set(numbers)
        for line in out.decode("utf-8", "replace").splitlines():
            match = HEADER.match(line)
            if match and int(match[2]) in wanted and match[1] not in hygiene.ignored:
                inducing.add(match[1])
    return inducing
