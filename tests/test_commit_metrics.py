"""The change metrics of chosen commits (`sweeper predict --repo`'s input) against `sweeper data from-git` on a small
repository built here (`bank_repo.py` lists its history), and the two JIT-Defects4J rules (package-info.java left out,
commit-date order) worked out by hand."""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import pytest

from bank_repo import Repo, build
from sweeper.errors import SweeperError
from sweeper.mining.at_commits import commit_records, resolve_revisions
from sweeper.mining.miner import MiningOptions, mine


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    return build(tmp_path_factory.mktemp("bank") / "bank")


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh $SWEEPER_CACHE per test: the state file of one test never serves another."""
    monkeypatch.setenv("SWEEPER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def mined(repo: Repo, folder: Path, **options) -> dict[str, dict]:
    """`from-git`'s records of the repository by commit name (every commit kept: no settle window)."""
    out = folder / f"mined-{len(options)}-{sorted(options.items())}.jsonl.gz".replace(" ", "")
    mine(MiningOptions(repo=repo.root, task="jitdp", out=out, settle_days=0, quiet=True, **options))
    names = {sha: name for name, sha in repo.shas.items()}
    with gzip.open(out, "rt") as lines:
        return {names[row["commit"]]: row for row in map(json.loads, lines)}


def test_metrics_equal_the_training_datas(repo: Repo, tmp_path: Path) -> None:
    """Every commit from-git keeps gets the same 14 values, message, date and diff from `commit_records`."""
    rows = mined(repo, tmp_path)
    assert sorted(rows) == ["R1", "R2", "R4", "R5", "R6"]  # R3 changes package-info.java alone, M is a merge
    found = commit_records(repo.root, ["HEAD~4..HEAD", repo.shas["R2"]])  # HEAD~4 is R2 (first parents)
    names = {sha: name for name, sha in repo.shas.items()}
    assert [names[r.id] for r in found.records] == ["R4", "R5", "R6", "R2"]
    for record in found.records:
        row = rows[names[record.id]]
        assert record.features == row["features"], names[record.id]
        assert (record.message, record.diff, record.date.isoformat()) == (row["message"], row["diff"], row["date"])
    assert found.notes == [f"commit {repo.shas[name][:12]}: {why}: not scored (`sweeper data from-git` leaves such "
                           "commits out of the training data too)"
                           for name, why in (("R3", "changes no source file"), ("M", "a merge commit"))]


def test_the_state_file_spares_rereading_the_history(repo: Repo, tmp_path: Path) -> None:
    first = commit_records(repo.root, ["HEAD"])
    again = commit_records(repo.root, ["HEAD"])
    assert first.history_commits == again.history_commits == 7
    assert (first.reused["commits"], again.reused["commits"]) == (0, 7)
    assert again.records == first.records
    older = commit_records(repo.root, [repo.shas["R2"]])  # only the history up to the commit asked for counts
    assert older.history_commits == 2 and older.records[0].features == mined(repo, tmp_path)["R2"]["features"]


def test_history_follows_commit_dates_by_default(repo: Repo, tmp_path: Path) -> None:
    """R4 was written on Jan 2 but committed on Jan 20. By commit date Bob had made R2 before it (exp 1) and
    Account.java last changed on Jan 5 (R2), 3 days after R4's author date: age -3, as JIT-Defects4J's data has
    negative ages. By author date R4 comes second: Bob's first commit, Account.java last changed on Jan 1."""
    by_commit, by_author = mined(repo, tmp_path)["R4"]["features"], mined(repo, tmp_path, history_order="author")
    assert (by_commit["exp"], by_commit["age"]) == (1.0, -3.0 / 2)  # Audit.java is new: age 0, mean over 2 files
    assert (by_author["R4"]["features"]["exp"], by_author["R4"]["features"]["age"]) == (0.0, 1.0 / 2)
    assert by_author["R2"]["features"]["exp"] == 1.0  # and R2 now follows Bob's R4


def test_package_info_files_are_left_out_unless_asked(repo: Repo, tmp_path: Path) -> None:
    default, counted = mined(repo, tmp_path), mined(repo, tmp_path, package_info=True)
    assert (default["R1"]["features"]["nf"], default["R1"]["features"]["la"]) == (1, 5)
    assert (counted["R1"]["features"]["nf"], counted["R1"]["features"]["la"]) == (2, 7)
    assert (default["R6"]["features"]["nf"], default["R6"]["features"]["la"], default["R6"]["features"]["ld"]) == \
        (1, 1, 1)
    assert "R3" not in default and counted["R3"]["features"]["nf"] == 1


def test_revisions_ranges_and_errors(repo: Repo, tmp_path: Path) -> None:
    shas = repo.shas
    assert resolve_revisions(repo.root, [f"{shas['R4']}..main~1"]) == [shas["R5"], shas["M"]]
    assert resolve_revisions(repo.root, ["HEAD", shas["R2"], "HEAD"]) == [shas["R6"], shas["R2"]]
    assert commit_records(repo.root, ["HEAD..HEAD"]).notes == ["no commits in HEAD..HEAD"]
    with pytest.raises(SweeperError, match="unknown branch or revision 'nope'"):
        resolve_revisions(repo.root, ["nope"])
    with pytest.raises(SweeperError, match="unknown range 'nope..HEAD'"):
        resolve_revisions(repo.root, ["nope..HEAD"])
    shallow = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "2", f"file://{repo.root}", str(shallow)], check=True)
    with pytest.raises(SweeperError, match="a shallow clone: .* `git fetch --unshallow`"):
        commit_records(shallow, ["HEAD"])


def test_from_git_options_for_the_other_rules(repo: Repo, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from sweeper.cli import main

    out = tmp_path / "other.jsonl"
    assert main(["data", "from-git", str(repo.root), "--task", "jitdp", "--out", str(out), "--settle-days", "0",
                 "--history-order", "author", "--package-info", "--json"]) == 0
    rows = {row["commit"]: row["features"] for row in map(json.loads, out.read_text().splitlines())}
    assert rows[repo.shas["R4"]]["exp"] == 0.0 and rows[repo.shas["R1"]]["nf"] == 2
    assert json.loads(capsys.readouterr().out)["kept"] == 6  # R3 counts with its package-info.java


def test_predict_reads_revisions_written_after_its_options() -> None:
    from sweeper.cli import parse, parser

    args = parse(parser(), ["predict", "RUN", "--repo", "clone", "HEAD~5..HEAD", "main", "--fail-above", "0.8"])
    assert (args.run_id, args.inputs, str(args.repo), args.fail_above) == ("RUN", ["HEAD~5..HEAD", "main"], "clone",
                                                                          0.8)
    with pytest.raises(SystemExit):
        parse(parser(), ["predict", "RUN", "--repo", "clone", "HEAD", "--no-such-option"])
    with pytest.raises(SystemExit):
        parse(parser(), ["ui", "--port", "5001", "extra"])  # other commands take no trailing positionals


def test_commits_of_one_commit_date_replay_parents_first(tmp_path: Path) -> None:
    """A rebased series applied within one second (commons-lang has one): the parent counts before its child,
    whichever sha sorts first."""
    for attempt in range(20):  # the shas follow from the content: find a child whose sha sorts before its parent's
        r = Repo(tmp_path / f"series-{attempt}")
        r.commit("P", "Dan", "2021-03-01T10:00:00+00:00", f"Add swap ({attempt})", {"src/A.java": "class A {}\n"},
                 committed="2021-04-28T12:58:11+00:00")
        r.commit("C", "Dan", "2021-03-23T10:00:00+00:00", "Add shift", {"src/A.java": "class A {\n}\n"},
                 committed="2021-04-28T12:58:11+00:00")
        if r.shas["C"] < r.shas["P"]:
            break
    rows = mined(r, tmp_path)
    assert (rows["P"]["features"]["exp"], rows["C"]["features"]["exp"]) == (0.0, 1.0)
    assert rows["C"]["features"]["age"] == 22.0  # since the parent's author date


def test_an_authors_first_commit_counts_in_its_last_files_subsystem(tmp_path: Path) -> None:
    """JIT-Defects4J's sexp: Eve's first commit touches `api` and `core` but counts for `core` (its last file)
    only, so her next commit, in both, has sexp (0 + 1) / 2; counting each subsystem gives (1 + 1) / 2."""
    r = Repo(tmp_path / "two")
    r.commit("F", "Eve", "2021-05-01T10:00:00+00:00", "Start",
             {"api/A.java": "class A {}\n", "core/B.java": "class B {}\n"})
    r.commit("N", "Eve", "2021-05-02T10:00:00+00:00", "Grow",
             {"api/A.java": "class A { }\n", "core/B.java": "class B { }\n"})
    assert mined(r, tmp_path)["N"]["features"]["sexp"] == 0.5
    assert mined(r, tmp_path, first_subsystems=True)["N"]["features"]["sexp"] == 1.0
