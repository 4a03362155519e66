"""`sweeper data from-git` on a small repository built here with git, whose SZZ labels and change metrics
are worked out by hand below (never by calling the miner's own code).

The history (author, author date; all on `main` unless said):

    C1   Alice 2020-01-01  Add calculator       src/Calc.java (5 lines), README.md, pom.xml
    C2   Bob   2020-01-05  Add subtraction      Calc.java +4: `sub` returns a + b (the bug)
    C3   Alice 2020-01-10  Document add         Calc.java +1: a comment line
    C4   Carol 2020-01-12  Reformat             Calc.java: re-indents the buggy line only (+02:00 offset)
    C5   Dave  2020-01-14  Add tests            src/test/CalcTest.java (3 lines)
    C6   dependabot[bot] 2020-01-15  Bump junit from 4.12 to 4.13   pom.xml
    C7   Alice 2020-01-20  Bump version to 1.1  pom.xml
    C7b  Alice 2020-01-22  Add logo             logo.png (binary only)
    C7c  Alice 2020-01-25  Trigger CI           (empty)
    C8   Bob   2020-02-01  Add lookup table     src/Table.java, 450 lines (too large for cmg)
    C9   Carol 2020-02-05  Add multiplication   Calc.java +4, on branch `feature`
    C10  Alice 2020-02-06  Tweak table          Table.java +1 -1
    M    Alice 2020-02-10  Merge branch 'feature'
    E1   Erin  2020-02-15  Try division         Calc.java +4, on branch `experiment`, never merged
    C11  Bob   2020-03-01  Fix subtraction bug  fixes `sub` (C2's line, re-indented by C4), deletes C3's
                                                comment, re-spaces C1's `class Calc {`, edits C5's test line
"""

from __future__ import annotations

import gzip
import json
import math
import os
import subprocess
from pathlib import Path

import pytest

from sweeper.cli import main
from sweeper.data.records import read_records
from sweeper.errors import SweeperError
from sweeper.mining.filters import diff_reason, message_reason
from sweeper.mining.gitcli import show_diffs
from sweeper.mining.miner import MiningOptions, mine
from sweeper.mining.szz import FixDetector

CALC_C1 = "class Calc {\n    int add(int a, int b) {\n        return a + b;\n    }\n}\n"
CALC_C2 = ("class Calc {\n    int add(int a, int b) {\n        return a + b;\n    }\n\n"
           "    int sub(int a, int b) {\n        return a + b;\n    }\n}\n")
CALC_C3 = CALC_C2.replace("    int add", "    // Adds two numbers.\n    int add")
CALC_C4 = CALC_C3.replace("    int sub(int a, int b) {\n        return a + b;",
                          "    int sub(int a, int b) {\n      return a + b;")
MUL = "\n    int mul(int a, int b) {\n        return a * b;\n    }\n}\n"
CALC_C9 = CALC_C4[:-2] + MUL
DIV = "\n    int div(int a, int b) {\n        return a / b;\n    }\n}\n"
CALC_FIXED = (CALC_C9.replace("class Calc {", "class Calc  {").replace("    // Adds two numbers.\n", "")
              .replace("    int sub(int a, int b) {\n      return a + b;",
                       "    int sub(int a, int b) {\n        return a - b;"))
TEST_C5 = "class CalcTest {\n    void testSub() { check(new Calc().sub(3, 1) == 4); }\n}\n"
TABLE = "class Table {\n" + "".join(f"    int v{i} = {i};\n" for i in range(448)) + "}\n"


class Builder:
    """Makes commits with fixed authors and dates in a fresh repository."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.shas: dict[str, str] = {}
        root.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str, env: dict[str, str] | None = None) -> str:
        base = {"PATH": os.environ["PATH"], "HOME": str(self.root), "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": os.devnull}
        done = subprocess.run(["git", "-C", str(self.root), *args], env={**base, **(env or {})},
                              capture_output=True, text=True, check=True)
        return done.stdout

    def commit(self, name: str, author: str, date: str, message: str, files: dict[str, str | bytes],
               *extra: str) -> None:
        for path, content in files.items():
            target = self.root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content if isinstance(content, bytes) else content.encode())
            self.git("add", path)
        people = {"GIT_AUTHOR_NAME": author, "GIT_AUTHOR_EMAIL": f"{author.split()[0]}@example.org",
                  "GIT_COMMITTER_NAME": author, "GIT_COMMITTER_EMAIL": f"{author.split()[0]}@example.org",
                  "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
        self.git("commit", "-q", "-m", message, *extra, env=people)
        self.shas[name] = self.git("rev-parse", "HEAD").strip()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("calc") / "calc"
    b = Builder(root)
    b.commit("C1", "Alice", "2020-01-01T10:00:00+00:00", "Add calculator",
             {"src/Calc.java": CALC_C1, "README.md": "# Calc\n",
              "pom.xml": "<version>1.0</version>\n<junit>4.12</junit>\n"})
    b.commit("C2", "Bob", "2020-01-05T10:00:00+00:00", "Add subtraction", {"src/Calc.java": CALC_C2})
    b.commit("C3", "Alice", "2020-01-10T10:00:00+00:00", "Document add", {"src/Calc.java": CALC_C3})
    b.commit("C4", "Carol", "2020-01-12T10:00:00+02:00", "Reformat", {"src/Calc.java": CALC_C4})
    b.commit("C5", "Dave", "2020-01-14T10:00:00+00:00", "Add tests", {"src/test/CalcTest.java": TEST_C5})
    b.commit("C6", "dependabot[bot]", "2020-01-15T10:00:00+00:00", "Bump junit from 4.12 to 4.13",
             {"pom.xml": "<version>1.0</version>\n<junit>4.13</junit>\n"})
    b.commit("C7", "Alice", "2020-01-20T10:00:00+00:00", "Bump version to 1.1",
             {"pom.xml": "<version>1.1</version>\n<junit>4.13</junit>\n"})
    b.commit("C7b", "Alice", "2020-01-22T10:00:00+00:00", "Add logo",
             {"logo.png": b"\x89PNG\r\n\x1a\n\x00\x00\x01\x02"})
    b.commit("C7c", "Alice", "2020-01-25T10:00:00+00:00", "Trigger CI", {}, "--allow-empty")
    b.commit("C8", "Bob", "2020-02-01T10:00:00+00:00", "Add lookup table", {"src/Table.java": TABLE})
    b.git("checkout", "-q", "-b", "feature")
    b.commit("C9", "Carol", "2020-02-05T10:00:00+00:00", "Add multiplication", {"src/Calc.java": CALC_C9})
    b.git("checkout", "-q", "main")
    b.commit("C10", "Alice", "2020-02-06T10:00:00+00:00", "Tweak table",
             {"src/Table.java": TABLE.replace("int v1 = 1;", "int v1 = -1;")})
    date = {"GIT_AUTHOR_NAME": "Alice", "GIT_AUTHOR_EMAIL": "Alice@example.org", "GIT_COMMITTER_NAME": "Alice",
            "GIT_COMMITTER_EMAIL": "Alice@example.org", "GIT_AUTHOR_DATE": "2020-02-10T10:00:00+00:00",
            "GIT_COMMITTER_DATE": "2020-02-10T10:00:00+00:00"}
    b.git("merge", "-q", "--no-ff", "feature", "-m", "Merge branch 'feature'", env=date)
    b.shas["M"] = b.git("rev-parse", "HEAD").strip()
    b.git("checkout", "-q", "-b", "experiment")
    b.commit("E1", "Erin", "2020-02-15T10:00:00+00:00", "Try division", {"src/Calc.java": CALC_C9[:-2] + DIV})
    b.git("checkout", "-q", "main")
    b.commit("C11", "Bob", "2020-03-01T10:00:00+00:00", "Fix subtraction bug",
             {"src/Calc.java": CALC_FIXED, "src/test/CalcTest.java": TEST_C5.replace("== 4", "== 2")})
    return root, b.shas


def run(repo: tuple[Path, dict[str, str]], tmp_path: Path, task: str = "jitdp", name: str = "out.jsonl.gz",
        **options) -> tuple[dict, dict[str, dict]]:
    """Mine the test repository; the summary and the records by commit name (C1, C2, ...)."""
    root, shas = repo
    out = tmp_path / name
    summary = mine(MiningOptions(repo=root, task=task, out=out, settle_days=options.pop("settle_days", 0),
                                 quiet=True, **options))
    names = {sha: name for name, sha in shas.items()}
    opener = gzip.open if name.endswith(".gz") else open
    with opener(out, "rt", encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    return summary, {names[row["commit"]]: row for row in rows}


def test_szz_labels_worked_out_by_hand(repo, tmp_path):
    """Only C2 wrote the line the fix changes. C4 only re-indented it (git blame -w sees through that), C3's
    line is a comment, C1's line the fix only re-spaced, C5's line is in a test file: none of them is blamed."""
    summary, rows = run(repo, tmp_path)
    assert {name: row["label"] for name, row in rows.items()} == {
        "C1": 0, "C2": 1, "C3": 0, "C4": 0, "C5": 0, "C8": 0, "C9": 0, "C10": 0, "C11": 0}
    assert summary["fix_commits"] == 1 and summary["inducing_commits"] == 1
    assert summary["labels"] == {"defect_inducing": 1, "clean": 8}
    _, with_tests = run(repo, tmp_path, name="tests.jsonl.gz", szz_tests=True)
    assert with_tests["C5"]["label"] == 1 and with_tests["C2"]["label"] == 1


def test_szz_is_pydrillers_but_for_the_lines_we_leave_out(repo, tmp_path):
    """PyDriller's own SZZ on the fix blames C1 (a line only re-spaced) and C5 (a test) besides C2."""
    from pydriller import Git

    root, shas = repo
    pydriller_git = Git(str(root))
    found = pydriller_git.get_commits_last_modified_lines(pydriller_git.get_commit(shas["C11"]))
    assert set().union(*found.values()) == {shas["C1"], shas["C2"], shas["C5"]}
    _, rows = run(repo, tmp_path)
    assert [name for name, row in rows.items() if row["label"]] == ["C2"]


def test_change_metrics_worked_out_by_hand(repo, tmp_path):
    _, rows = run(repo, tmp_path)
    day = 86400.0
    assert rows["C2"]["features"] == {"la": 4, "ld": 0, "nf": 1, "ns": 1, "nd": 1, "entropy": 0.0, "ndev": 1,
                                      "lt": 5.0, "nuc": 1, "age": 4.0, "exp": 0.0, "rexp": 0.0, "sexp": 0.0, "fix": 0}
    c4 = rows["C4"]["features"]  # 10:00+02:00 is 08:00 UTC, 1 day 22 hours after C3
    assert (c4["la"], c4["ld"], c4["lt"], c4["nuc"], c4["ndev"]) == (1, 1, 10.0, 3, 1)
    assert math.isclose(c4["age"], (86400 + 22 * 3600) / day)
    # C11 touches Calc.java (3 deleted, 2 added) and CalcTest.java (1 and 1). With every ref counted,
    # Calc.java's history is C1 +5, C2 +4, C3 +1, C4 +1-1, C9 +4 and E1 +4 (the unmerged branch): 18 lines,
    # 6 changes, last on Feb 15; CalcTest.java: C5 +3, 1 change, on Jan 14. Bob's earlier commits: C2 (56 days
    # before) and C8 (29 days before), both in `src`. CommitGuru's ndev: Calc.java's author list stays
    # {Alice} (its creator; later authors only modified it), CalcTest.java's is {Dave}.
    expected = {"la": 3, "ld": 4, "nf": 2, "ns": 1, "nd": 2,
                "entropy": -(5 / 7 * math.log2(5 / 7) + 2 / 7 * math.log2(2 / 7)), "ndev": 2,
                "lt": (18 + 3) / 2, "nuc": 6 + 1, "age": (15 + 47) / 2, "exp": 2.0,
                "rexp": 1 / (1 + 56 / 365) + 1 / (1 + 29 / 365), "sexp": 2.0, "fix": 1}
    assert list(rows["C11"]["features"]) == list(expected)
    for name, value in expected.items():
        assert math.isclose(rows["C11"]["features"][name], value, rel_tol=1e-12), name
    # The branch's history alone leaves E1 out: Calc.java has 14 lines, 5 changes, last on Feb 5 (C9).
    _, branch = run(repo, tmp_path, name="branch.jsonl.gz", history="branch")
    c11 = branch["C11"]["features"]
    assert (c11["lt"], c11["nuc"], c11["age"]) == ((14 + 3) / 2, 5 + 1, (25 + 47) / 2)


def test_records_are_the_shared_format_and_read_back(repo, tmp_path):
    root, shas = repo
    summary, rows = run(repo, tmp_path)
    dataset = read_records(str(tmp_path / "out.jsonl.gz"), "jitdp")
    assert [record.id for record in dataset.records] == [f"calc@{shas[n]}" for n in
                                                          ("C1", "C2", "C3", "C4", "C5", "C8", "C9", "C10", "C11")]
    c4 = rows["C4"]
    assert list(c4) == ["id", "project", "commit", "date", "message", "diff", "label", "features"]
    assert (c4["project"], c4["date"], c4["message"]) == ("calc", "2020-01-12T10:00:00+02:00", "Reformat")
    shown = subprocess.run(["git", "-C", str(root), "show", "--format=", "--no-color", "--no-ext-diff", "-M",
                            shas["C4"]], capture_output=True, check=True).stdout.decode()
    assert c4["diff"] == shown and c4["diff"].startswith("diff --git a/src/Calc.java")
    assert summary["dropped"] == {"binary-only-diff": 1, "empty-diff": 1, "merge-commit": 1, "no-source-file": 2}
    assert summary["commits_read"] == 14 and summary["kept"] == 9


def test_cmg_keeps_what_the_shared_cmg_data_keeps(repo, tmp_path):
    summary, rows = run(repo, tmp_path, task="cmg", name="cmg.jsonl")
    assert sorted(rows) == sorted(["C1", "C2", "C3", "C4", "C5", "C9", "C10", "C11"])
    assert summary["dropped"] == {"binary-only-diff": 1, "bot-author": 1, "diff-over-400-lines": 1,
                                  "empty-diff": 1, "merge-commit": 1, "version-bump": 1}
    assert list(rows["C2"]) == ["id", "project", "commit", "date", "message", "diff"]
    assert len(read_records(str(tmp_path / "cmg.jsonl"), "cmg").records) == 8
    summary, _ = run(repo, tmp_path, task="cmg", name="cmg2.jsonl", max_diff_lines=1000)
    assert "diff-over-400-lines" not in summary["dropped"] and summary["kept"] == 9


def test_settle_window_and_period(repo, tmp_path):
    """30 days before the newest commit (C11, Mar 1) is Jan 31: C8, C9, C10 and C11 are not settled."""
    summary, rows = run(repo, tmp_path, settle_days=30)
    assert summary["unsettled"] == 4 and summary["dropped"]["unsettled"] == 4
    assert sorted(rows) == ["C1", "C2", "C3", "C4", "C5"] and rows["C2"]["label"] == 1
    summary, rows = run(repo, tmp_path, name="window.jsonl.gz", since=iso("2020-01-05T00:00:00+00:00"),
                        until=iso("2020-01-31T00:00:00+00:00"), max_commits=3)
    assert summary["commits_read"] == 3 and sorted(rows) == ["C2", "C3", "C4"] and rows["C2"]["label"] == 1


def test_a_rerun_reuses_the_finished_work(repo, tmp_path):
    first, _ = run(repo, tmp_path)
    assert first["reused"] == {"commits": 0, "blames": 0}
    before = (tmp_path / "out.jsonl.gz").read_bytes()
    second, _ = run(repo, tmp_path)
    assert second["reused"] == {"commits": first["history_commits"], "blames": first["fix_commits"]} == \
        {"commits": 15, "blames": 1}
    assert (tmp_path / "out.jsonl.gz").read_bytes() == before
    state = tmp_path / "out.jsonl.gz.state.jsonl"
    lines = state.read_text().splitlines(keepends=True)
    state.write_text("".join(lines[:-3]) + lines[-3][:20])  # interrupted while writing a line
    third, _ = run(repo, tmp_path)
    assert third["reused"] == {"commits": 13, "blames": 0}
    assert (tmp_path / "out.jsonl.gz").read_bytes() == before
    _, szz_changed = run(repo, tmp_path, szz_tests=True)
    assert szz_changed["C5"]["label"] == 1


def test_batched_diffs_equal_one_git_show_each(repo):
    """Root, empty, binary-only and ordinary commits: the batched reader gives `git show`'s text exactly."""
    root, shas = repo
    names = ["C1", "C4", "C7b", "C7c", "C8", "C11", "E1"]
    batched = dict(show_diffs(root, [shas[n] for n in names], batch=3))
    for name in names:
        alone = subprocess.run(["git", "-C", str(root), "show", "--format=", "--no-color", "--no-ext-diff", "-M",
                                shas[name]], capture_output=True, check=True).stdout.decode()
        assert batched[shas[name]] == alone, name
    assert batched[shas["C7c"]] == "" and "Binary files" in batched[shas["C7b"]]


def test_diffs_ignore_the_checkouts_gitattributes(tmp_path):
    """A `diff=java` driver in the checkout changes hunk headers; the shared data was built without one."""
    b = Builder(tmp_path / "attrs")
    body = "class A {\n    void f() {\n" + "".join(f"        int x{i} = {i};\n" for i in range(8)) + "    }\n}\n"
    b.commit("one", "Alice", "2020-01-01T10:00:00+00:00", "Add A", {"A.java": body})
    b.commit("two", "Alice", "2020-01-02T10:00:00+00:00", "Change A", {"A.java": body.replace("x7 = 7", "x7 = 8")})
    (b.root / ".gitattributes").write_text("*.java diff=java\n")
    _, rows = run((b.root, b.shas), tmp_path, task="cmg", name="attrs.jsonl")
    show = ["show", "--format=", "--no-color", "--no-ext-diff", "-M", b.shas["two"]]
    assert rows["two"]["diff"] == b.git("-C", ".git", *show) != b.git(*show)
    assert "@@ -7,6 +7,6 @@ class A {\n" in rows["two"]["diff"]  # not the java driver's "void f() {"


def test_cli_errors_are_one_line(repo, tmp_path, capsys):
    root, _ = repo
    (tmp_path / "plain").mkdir()
    cases = {
        (str(tmp_path / "plain"), "--out", str(tmp_path / "x.jsonl")): "not a git repository",
        (str(root), "--out", str(tmp_path / "x.jsonl"), "--branch", "nope"): "unknown branch or revision 'nope'",
        (str(root), "--out", str(tmp_path / "x.jsonl"), "--since", "last tuesday"): "--since: not a date",
        (str(root), "--out", str(tmp_path / "missing" / "x.jsonl")): "does not exist",
        (str(root), "--out", str(tmp_path / "x.jsonl"), "--fix-pattern", "(unclosed"): "not a valid regular expression",
    }
    for args, expected in cases.items():
        assert main(["data", "from-git", "--task", "jitdp", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and expected in err and "\n" not in err and "Traceback" not in err


def test_cli_prints_the_summary_as_json(repo, tmp_path, capsys):
    root, _ = repo
    out = tmp_path / "cli.jsonl.gz"
    assert main(["data", "from-git", str(root), "--task", "jitdp", "--out", str(out), "--settle-days", "0",
                 "--json", "--project", "calculator"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["project"] == "calculator" and summary["kept"] == 9 and summary["labels"]["defect_inducing"] == 1
    assert read_records(str(out), "jitdp").records[0].id.startswith("calculator@")


def test_message_and_diff_rules():
    drops = {
        "Merge pull request #12 from someone/branch": "merge-message",
        "Merge branch 'main' into dev": "merge-message",
        "Bump version to 2.3.1": "version-bump",
        "Release 2.3.0": "version-bump",
        "release version 2.3.0": "version-bump",
        "start version 2.3.1": "version-bump",
        "v2.3.0": "version-bump",
        "Version bump: v0.3.4": "version-bump",
        "Bump to dev version": "version-bump",
        "start 1.1 changelog": "version-bump",
        "Prepare v2.18.0": "version-bump",
        "2.17.1": "version-bump",
        "update version number": "version-bump",
        "Merged in changes from master by hand": "merge-message",
        "Merge #491": "merge-message",
        "Bump requests from 2.31.0 to 2.32.0": "dependency-bump",
        "  \n": "empty-message",
    }
    for message, reason in drops.items():
        assert message_reason(message, "Alice") == reason, message
    for message in ("Release connection in digest auth", "Bump dev version", "v0.8.8 release", "merge slashes",
                    "Release the v0.5.0!", "v2.3.1 changelog", "Version needs to be available externally.",
                    "bump werkzeug 2.3.7", "merge conflict"):
        assert message_reason(message, "Alice") is None, message
    assert message_reason("Update docs", "pre-commit-ci[bot]") == "bot-author"
    text = "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a\n+b\n"
    binary = ("diff --git a/l.png b/l.png\nnew file mode 100644\nindex 0000000..1\n"
              "Binary files /dev/null and b/l.png differ\n")
    assert diff_reason("") == "empty-diff" and diff_reason(binary) == "binary-only-diff"
    assert diff_reason(text + binary) is None and diff_reason(text, max_lines=5) == "diff-over-5-lines"
    assert diff_reason("+diff --git a/p b/p\n") == "empty-diff"  # a diff line inside a file is no file header


def test_fix_detection():
    default = FixDetector()
    assert default.is_fix("a", "Fix NPE in decode") and default.fixes_defect("a", "Fix NPE in decode")
    assert default.is_fix("a", "Checkstyle fixes.") and not default.fixes_defect("a", "Checkstyle fixes.")
    assert not default.is_fix("a", "Add prefix support") and not default.is_fix("a", "Apply patch from Bob")
    assert default.is_fix("a", "Bugfix: wrong offset") and default.is_fix("a", "Test fails on Windows")
    linked = FixDetector(issues=r"CODEC-\d+")
    assert linked.is_fix("a", "[CODEC-12] fix decoding") and not linked.is_fix("a", "fix decoding")
    assert FixDetector(keywords="", issues=r"CODEC-\d+").is_fix("a", "[CODEC-12] add encoder")
    listed = FixDetector(keywords="", shas=frozenset({"b"}))
    assert listed.fixes_defect("b", "Improve docs") and not listed.is_fix("a", "Fix bug")
    with pytest.raises(SweeperError, match="--issue-pattern"):
        FixDetector(issues="[")


def iso(text: str):
    from datetime import datetime

    return datetime.fromisoformat(text)
