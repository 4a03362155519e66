"""What a task is: the parts of a trial that differ between tasks (model, encoding, loss, evaluation, metrics, the
predictions file), and what an evaluation returns.

Each task module of this package defines one task class; `sweeper.tasks` collects them by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from sweeper.predictions import Prediction

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from sweeper.data.encoding import EncodedCommit
    from sweeper.data.features import FeatureScaler
    from sweeper.data.records import CommitRecord



@dataclass
class Scores:
    """Metrics over a set of commits and one prediction per commit (in input order).

    `scored` is False when only the cheap metrics were computed (message generation between scorings:
    the evaluation loss, no messages generated).
    """

    metrics: dict[str, float]
    predictions: list[Prediction]
    scored: bool = True


class Task(Protocol):
    """The task-specific parts of a trial, and the metrics the task reports."""

    name: ClassVar[str]
    metrics: ClassVar[tuple[str, ...]]  # reported by every evaluation
    generated_metrics: ClassVar[tuple[str, ...]]  # scored on generated text: at the end, or every generation.every
    lower_is_better: ClassVar[tuple[str, ...]]
    shown: ClassVar[tuple[str, ...]]  # shown beside the sweep's metric in rankings and reports
    prediction_columns: ClassVar[tuple[str, str, str]]  # of its predictions file: `predictions.SCORES` or `MESSAGES`
    scaler: FeatureScaler | None  # the expert features' scaler, fitted on the training split (`features: expert`)

    def fit(self, train: list[CommitRecord]) -> None:
        """Learn from the training records, before any split is encoded, what encoding needs (the scaler)."""

    def load_model(self, backbone: str) -> PreTrainedModel: ...

    def encode(self, records: list[CommitRecord], tokenizer: PreTrainedTokenizerBase) -> list[EncodedCommit]: ...

    def prepare(self, train: list[EncodedCommit], tokenizer: PreTrainedTokenizerBase, device: torch.device) -> None:
        """Set what training needs from the data and tokenizer (class weights, pad and end ids)."""

    def batch(self, model: PreTrainedModel, items: list[EncodedCommit], device: torch.device) -> dict[str, torch.Tensor]:
        """A training batch on `device`: padded inputs and labels."""

    def loss(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor: ...

    def evaluate(self, model: PreTrainedModel, items: list[EncodedCommit], device: torch.device,
                 score: bool) -> Scores: ...

    def test_metrics(self, model: PreTrainedModel, items: list[EncodedCommit], device: torch.device,
                     best: dict[str, float]) -> dict[str, float]: ...

    def intervals(self, items: list[EncodedCommit], predictions: list[Prediction]) -> dict[str, float]:
        """Seeded bootstrap 95 % intervals of the task's metrics over `items`: `<metric>_ci_low`, `<metric>_ci_high`."""

    def truth(self, item: EncodedCommit) -> Any:
        """What a prediction of `item` is compared with (its label, its own message): the predictions file's column."""

    def predict_records(self, model: PreTrainedModel, records: list[CommitRecord], tokenizer: PreTrainedTokenizerBase,
                        device: torch.device) -> list[Prediction]:
        """Predictions for new commits (no labels or messages needed), encoded as in training."""
