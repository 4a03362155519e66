"""`sweeper predict`: the defect probability of commits, or the message a CMG model writes for them, from a
trial's model as logged in MLflow.

    $ git show HEAD | sweeper predict RUN_ID
    0.4125
    $ git show HEAD | sweeper predict CMG_RUN_ID
    fix typo in the docs
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sweeper.data.commits import parse_commits
from sweeper.data.records import CommitRecord
from sweeper.artifacts import TrialArtifacts, downloaded_trial, trained_model
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
    """Encode records as the trial was trained (same tokenizer, lengths) and return P(defect) or a message per record."""
    from sweeper.backbone import load_tokenizer
    from sweeper.data.encoding import encode_commits
    from sweeper.tasks.defects import predict

    config = trial.config
    if config.task == "cmg":
        return write_messages(trial, records)
    tokenizer = load_tokenizer(config.backbone)
    items = encode_commits(records, tokenizer, config.data.max_length, config.data.message_tokens)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = trained_model(trial).to(device)
    scores, _ = predict(model, items, config.eval_batch_size, pad_id, device)
    return [Prediction(record.id, score) for record, score in zip(records, scores)]


def write_messages(trial: TrialArtifacts, records: list[CommitRecord]) -> list[Prediction]:
    """The message the run's model generates for each record's diff (its own message, if any, is ignored)."""
    from sweeper.backbone import load_tokenizer
    from sweeper.data.encoding import encode_for_generation
    from sweeper.tasks.messages import MessageGeneration

    config = trial.config
    tokenizer = load_tokenizer(config.backbone, config.task)
    items = encode_for_generation(records, tokenizer, config.data.max_length, config.data.message_tokens,
                                  keep_without_message=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    task = MessageGeneration(config)
    task.prepare(items, tokenizer, device)
    messages = task.generate(trained_model(trial).to(device), items, device)
    return [Prediction(record.id, message=message) for record, message in zip(records, messages)]
