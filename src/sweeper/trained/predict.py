"""`sweeper predict`: the defect probability of commits, or the message a CMG model writes for them, from a
trial's model as logged in MLflow.

    $ git show HEAD | sweeper predict RUN_ID
    0.4125
    $ git show HEAD | sweeper predict CMG_RUN_ID
    fix typo in the docs

Whatever comes in is read: bytes that are not UTF-8 become U+FFFD and binary patches are left out (the model reads
text lines), each with a note saying so; a huge diff costs no more than its first `max_length` tokens; empty input
or text that is no commit is an error line.

A run trained with expert features (`features: expert`) reads each commit's 14 change metrics too: give it JSON
Lines whose records carry a `features` object, or name commits of a clone and let sweeper compute them from its
history (`sweeper.mining.at_commits`, the definitions `sweeper data from-git` trains on); it scales them with the
trial's saved scaler:

    $ sweeper predict RUN_ID --repo . origin/main..HEAD
    3f2a9c1d0b7e\t0.412500\tclean\tRefuse withdrawals beyond the balance
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from sweeper.artifacts import TrialArtifacts, downloaded_trial, trained_model
from sweeper.data.commits import parse_commits
from sweeper.data.features import FEATURE_NAMES
from sweeper.data.records import CommitRecord
from sweeper.errors import SweeperError
from sweeper.tracking.client import Tracker
from sweeper.tracking.schema import BEST_PREFIX

BINARY_CHANGE = re.compile(r"^(?:Binary files .* differ|GIT binary patch)$", re.MULTILINE)
THRESHOLD_METRIC = BEST_PREFIX + "max_f1_threshold"  # the validation threshold of the best F1, as the run logged it
DEFECT, CLEAN = "defect-inducing", "clean"


@dataclass(frozen=True)
class CommitPrediction:
    """One commit's id and its defect probability (defect prediction) or generated message (message generation)."""

    id: str
    probability: float | None = None
    message: str | None = None
    threshold: float | None = None  # the run's max-F1 threshold, when it logged one

    @property
    def decision(self) -> str | None:
        """`defect-inducing` at or above the threshold (as the run's F1 counts), else `clean`; None without one."""
        if self.threshold is None or self.probability is None:
            return None
        return DEFECT if self.probability >= self.threshold else CLEAN


def decode_input(data: bytes, source: str) -> tuple[str, list[str]]:
    """The input as text, and a note when some of it was not UTF-8 (a Latin-1 source file in a diff, say).

    >>> decode_input("café".encode("latin-1"), "<stdin>")
    ('caf\ufffd', ['<stdin>: 1 byte sequence is not UTF-8: read as U+FFFD, an unknown character to the model'])
    """
    text = data.decode("utf-8", errors="replace")
    replaced = text.count("\ufffd") - data.count("\ufffd".encode())
    if not replaced:
        return text, []
    plural = "s are" if replaced > 1 else " is"
    return text, [f"{source}: {replaced} byte sequence{plural} not UTF-8: read as U+FFFD, an unknown character to "
                  "the model"]


def left_out(records: list[CommitRecord]) -> list[str]:
    """A note per commit with binary changes: they are not part of what the model reads.

    >>> left_out([CommitRecord(id="abc", date=None, message="", diff="Binary files a/x.png and b/x.png differ")])
    ['commit abc: 1 binary change left out (the model reads changed text lines only)']
    """
    notes = []
    for record in records:
        binary = len(BINARY_CHANGE.findall(record.diff))
        if binary:
            notes.append(f"commit {record.id}: {binary} binary change{'s' if binary > 1 else ''} left out "
                         "(the model reads changed text lines only)")
    return notes


def predict_text(tracker: Tracker, run_id: str, text: str, source: str = "<stdin>",
                 notes: list[str] | None = None) -> list[CommitPrediction]:
    """Parse commits from `text` (git show, a diff or JSONL) and score them with the run's model; what the model
    could not read is added to `notes`."""
    records = parse_commits(text, source)
    if notes is not None:
        notes.extend(left_out(records))
    with downloaded_trial(tracker, run_id) as trial:
        return predict_records(trial, records)


def predict_repo(tracker: Tracker, run_id: str, repo: Path, revisions: list[str],
                 notes: list[str] | None = None) -> tuple[list[CommitPrediction], list[CommitRecord]]:
    """Score the commits `revisions` name in the clone `repo` (their change metrics computed from its history), each
    with the run's threshold; the records scored come back too. Commits from-git would leave out (merges, no source
    file) are not scored: a note each. The clone is read first, so a wrong path or revision fails at once."""
    from sweeper.mining.at_commits import commit_records

    found = commit_records(repo, revisions)
    if notes is not None:
        notes.extend(found.notes + left_out(found.records))
    with downloaded_trial(tracker, run_id) as trial:
        if trial.config.task != "jitdp":
            raise SweeperError(f"--repo scores defect risk: run {trial.run_id} is a {trial.config.task} trial; pipe "
                               "`git show` output into `sweeper predict` for its messages")
        if not found.records:
            return [], []
        threshold = trial.metrics.get(THRESHOLD_METRIC)
        scored = predict_records(trial, found.records)
        return [CommitPrediction(p.id, p.probability, threshold=threshold) for p in scored], found.records


def predict_records(trial: TrialArtifacts, records: list[CommitRecord]) -> list[CommitPrediction]:
    """Encode records as the trial was trained (same tokenizer, lengths) and return its task's prediction for each:
    P(defect), or a generated message."""
    from sweeper.backbone import load_tokenizer
    from sweeper.tasks import task_for

    config = trial.config
    task = task_for(config)
    if config.features == "expert":
        if not any(record.features for record in records):
            raise SweeperError(f"run {trial.run_id} was trained with expert features (features: expert): it needs each "
                               "commit's 14 change metrics, which `git show` output and diffs do not carry; give JSON "
                               f"Lines with a \"features\" object ({', '.join(FEATURE_NAMES)})")
        task.scaler = trial.scaler
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = trained_model(trial).to(device)
    outputs = task.predict_records(model, records, load_tokenizer(config.backbone, config.task), device)
    return [CommitPrediction(record.id, message=output) if isinstance(output, str) else CommitPrediction(record.id, output)
            for record, output in zip(records, outputs)]
