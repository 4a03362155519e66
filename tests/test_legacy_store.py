"""An MLflow store written by the previous release still reads: `best`, `report` and `reproduce` on a copy of
`fixtures/legacy-store` (what wrote it: `fixtures/README.md`). What each command prints is checked against the
store itself, read with plain SQL."""

from __future__ import annotations

import shutil
import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import last_json, markdown_table, sweeper

pytestmark = pytest.mark.slow

FIXTURE = Path(__file__).parent / "fixtures" / "legacy-store"
WRITTEN_IN = "/tmp/legacy/legacy-store"  # where the old release wrote the store: its absolute paths start so


@dataclass(frozen=True)
class Trial:
    """A trial run as the store holds it."""

    run_id: str
    number: int
    state: str
    method: str
    best_auc: float | None


@dataclass(frozen=True)
class Store:
    folder: Path
    parent_run_id: str
    trials: list[Trial]

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.folder / 'mlflow.db'}"

    def complete(self) -> list[Trial]:
        """The completed trials, best AUC first."""
        return sorted((t for t in self.trials if t.state == "complete"), key=lambda t: -t.best_auc)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """A copy of the fixture, its absolute paths moved to the copy's place, and its trials read with SQL."""
    folder = tmp_path_factory.mktemp("legacy") / "legacy-store"
    shutil.copytree(FIXTURE, folder)
    moved = (WRITTEN_IN, str(folder))
    with sqlite3.connect(folder / "mlflow.db") as db:
        db.execute("UPDATE experiments SET artifact_location = replace(artifact_location, ?, ?)", moved)
        db.execute("UPDATE runs SET artifact_uri = replace(artifact_uri, ?, ?)", moved)
        db.execute("UPDATE tags SET value = replace(value, ?, ?) WHERE key = 'optuna.storage'", moved)
        left = db.execute("SELECT count(*) FROM runs JOIN tags USING (run_uuid) WHERE artifact_uri LIKE ?1 "
                          "OR value LIKE ?1", (f"%{WRITTEN_IN}%",)).fetchone()[0]
        assert left == 0, "a path of the old folder is left in the store"
        tags = {}
        for run_id, key, value in db.execute("SELECT run_uuid, key, value FROM tags"):
            tags.setdefault(run_id, {})[key] = value
        best = dict(db.execute("SELECT run_uuid, value FROM latest_metrics WHERE key = 'best_auc'").fetchall())
    db.close()
    (parent,) = [run_id for run_id, run in tags.items() if run.get("sweeper.role") == "sweep"]
    trials = [Trial(run_id, int(run["optuna.trial"]), run["sweeper.state"], run["sweeper.method"], best.get(run_id))
              for run_id, run in tags.items() if run.get("sweeper.role") == "trial"]
    return Store(folder, parent, sorted(trials, key=lambda t: t.number))


def test_the_fixture_is_what_the_readme_says(store: Store) -> None:
    assert Counter((t.state, t.method) for t in store.trials) == {
        ("complete", "ia3"): 1, ("complete", "lora"): 2, ("pruned", "lora"): 2}


def test_best_ranks_the_completed_trials_by_their_stored_auc(store: Store) -> None:
    ranked = last_json(sweeper("best", "--tracking-uri", store.uri, "--json", cwd=store.folder))["runs"]
    assert [(t["run_id"], t["method"], t["auc"]) for t in ranked] == [
        (t.run_id, t.method, t.best_auc) for t in store.complete()]


def test_report_is_written_with_the_stored_numbers(store: Store) -> None:
    out = sweeper("report", "--tracking-uri", store.uri, "--out", "report", cwd=store.folder)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    markdown = (store.folder / "report" / "report.md").read_text()
    for section in ("Sweep totals", "Best trial per method", "Learning curves", "Hyper-parameters", "All trials"):
        assert f"\n## {section}\n" in markdown, section
    totals = {row["trials / compute"]: row["value"] for row in markdown_table(markdown, "Sweep totals")}
    states = Counter(t.state for t in store.trials)
    assert {state: int(totals[state]) for state in ("complete", "pruned", "failed", "killed")} == {
        state: states[state] for state in ("complete", "pruned", "failed", "killed")}
    best_per_method = {}
    for trial in store.complete():
        best_per_method.setdefault(trial.method, trial)
    rows = {row["method"]: row for row in markdown_table(markdown, "Best trial per method")}
    assert {method: (row["run"], row["best auc"]) for method, row in rows.items()} == {
        method: (f"`{t.run_id}`", f"{t.best_auc:.4f}") for method, t in best_per_method.items()}
    every = markdown_table(markdown, "All trials")
    assert [(int(row["#"]), row["state"], row["method"]) for row in every] == [
        (t.number, t.state, t.method) for t in store.trials]
    logged = store.folder / "mlruns" / "1" / store.parent_run_id / "artifacts" / "report" / "report.md"
    assert logged.read_text() == markdown  # logged to the old sweep's parent run


def test_reproduce_of_the_best_trial_gives_equal_metrics(store: Store) -> None:
    """The store was written on another machine (an AMD EPYC) by a release that did not record machines: identical
    on that machine kind, equal within the tolerance on any (exit 0 either way)."""
    best = store.complete()[0]
    outcome = last_json(sweeper("reproduce", best.run_id, "--tracking-uri", store.uri, "--json", cwd=store.folder))
    assert outcome["same_machine"] is None and outcome["outcome"] in ("identical", "within_tolerance")
    assert outcome["largest_difference"]["value"] <= outcome["tolerance"] == 1e-4
    assert outcome["original"]["auc"] == best.best_auc
    assert all(abs(outcome["reproduced"][name] - value) <= 1e-4 for name, value in outcome["original"].items())
