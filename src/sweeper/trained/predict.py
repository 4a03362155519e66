"""`sweeper predict`: the defect probability of commits, or the message a CMG model writes for them, from a
trial's model as logged in MLflow.

    $ git show HEAD | sweeper predict RUN_ID
    0.4125
    $ git show HEAD | sweeper predict CMG_RUN_ID
    fix typo in the docs

A run trained with expert features (`features: expert`) reads each commit's 14 change metrics too: give it JSON
Lines whose records carry a `features` object; it scales them with the trial's saved scaler.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sweeper.artifacts import TrialArtifacts, downloaded_trial, trained_model
from sweeper.data.commits import parse_commits
from sweeper.data.features import FEATURE_NAMES
from sweeper.data.records import CommitRecord
from sweeper.errors import SweeperError
from sweeper.tracking.client import Tracker


@dataclass(frozen=True)
class Prediction:
    """One commit's id and its defect probability (defect prediction) or generated message (message generation)."""

    id: str
    probability: float | None = None
    message: str | None = None


def predict_text(tracker: Tracker, run_id: str, text: str, source: str = "<stdin>") -> list[Prediction]:
    """Parse commits from `text` (git show, a diff or JSONL) and score them with the run's model."""
    records = parse_commits(text, source)
    with downloaded_trial(tracker, run_id) as trial:
        return predict_records(trial, records)


def predict_records(trial: TrialArtifacts, records: list[CommitRecord]) -> list[Prediction]:
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
    return [Prediction(record.id, message=output) if isinstance(output, str) else Prediction(record.id, output)
            for record, output in zip(records, outputs)]
