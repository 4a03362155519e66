"""Just-in-time defect prediction: a sequence classifier scores P(defect) for each commit.

With `features: expert` the classifier gets JIT-Fine's expert-feature head (`tasks.expert_head`) before the method
is applied: `fit` fits a `FeatureScaler` on the training records alone, `encode` attaches every split's scaled
features to its encoded commits, and every forward pass (loss, evaluation, prediction) hands a batch's features
to the head.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from sweeper.backbone import decoder_only, load_classifier
from sweeper.data.batching import batch_indices, collate
from sweeper.data.encoding import EncodedCommit, encode_commits, with_features
from sweeper.data.features import FeatureScaler, feature_matrix
from sweeper.data.records import CommitRecord
from sweeper.metrics.bootstrap import classification_intervals, flat_intervals
from sweeper.metrics.classification import classification_metrics
from sweeper.precision import autocast
from sweeper.predictions import SCORES, Prediction
from sweeper.tasks.base import Scores
from sweeper.tasks.expert_head import batch_features, install_expert_head

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from sweeper.config import TrialConfig


class DefectPrediction:
    """Binary classification of commits: P(defect) for each."""

    name = "jitdp"
    metrics = ("auc", "f1", "mcc", "precision", "recall", "max_f1", "eval_loss")
    generated_metrics = ()
    lower_is_better = ("eval_loss",)
    shown = ("auc", "f1", "mcc")
    prediction_columns = SCORES

    def __init__(self, config: TrialConfig) -> None:
        self.config = config
        self.pad_id = 0
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.scaler: FeatureScaler | None = None

    @property
    def expert(self) -> bool:
        return self.config.features == "expert"

    def fit(self, train: list[CommitRecord]) -> None:
        """With expert features: the scaler, fitted on the training records only (a record without them: DataError)."""
        if self.expert:
            self.scaler = FeatureScaler().fit(feature_matrix(train))

    def load_model(self, backbone: str) -> PreTrainedModel:
        """The classifier; with expert features, its head replaced by the expert-feature head."""
        model = load_classifier(backbone, num_labels=2, quantization=self.config.quantization)
        if self.expert:
            install_expert_head(model)
        return model

    def encode(self, records: list[CommitRecord], tokenizer: PreTrainedTokenizerBase) -> list[EncodedCommit]:
        """Token ids (and, with expert features, the records' features scaled by the training split's scaler)."""
        items = encode_commits(records, tokenizer, self.config.data.max_length, self.config.data.message_tokens)
        if not self.expert:
            return items
        if self.scaler is None:
            raise RuntimeError("DefectPrediction.encode with expert features before fit (or a loaded scaler)")
        return with_features(items, self.scaler.transform(feature_matrix(records)).tolist())

    def prepare(self, train: list[EncodedCommit], tokenizer: PreTrainedTokenizerBase, device: torch.device) -> None:
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        weights = class_weights(train).to(device) if self.config.class_weighting else None
        self.loss_fn = torch.nn.CrossEntropyLoss(weight=weights)

    def batch(self, model: PreTrainedModel, items: list[EncodedCommit], device: torch.device) -> dict[str, torch.Tensor]:
        return {key: value.to(device) for key, value in collate(items, self.pad_id, self.config.data.pad_to).items()}

    def loss(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with batch_features(model, batch):
            logits = model(**model_inputs(model, batch)).logits
        return self.loss_fn(logits, batch["labels"])

    def evaluate(self, model: PreTrainedModel, items: list[EncodedCommit], device: torch.device,
                 score: bool = True) -> Scores:
        scores, eval_loss = self.scores(model, items, device)
        metrics = classification_metrics([item.label for item in items], scores) | {"eval_loss": eval_loss}
        return Scores(metrics, list(scores))

    def scores(self, model: PreTrainedModel, items: list[EncodedCommit],
               device: torch.device) -> tuple[list[float], float]:
        """`predict` under the trial's autocast, as it trained: evaluation, test and `sweeper predict` score alike."""
        with autocast(self.config, device):
            return predict(model, items, self.config.eval_batch_size, self.pad_id, device, self.config.data.pad_to)

    def test_metrics(self, model: PreTrainedModel, items: list[EncodedCommit], device: torch.device,
                     best: dict[str, float]) -> dict[str, float]:
        scores, _ = self.scores(model, items, device)
        labels = [item.label for item in items]
        test = {f"test_{name}": value for name, value in classification_metrics(labels, scores).items()}
        test["test_f1_at_valid_threshold"] = classification_metrics(labels, scores, best["max_f1_threshold"])["f1"]
        intervals = flat_intervals(classification_intervals(labels, [float(score) for score in scores]))
        return test | {f"test_{name}": value for name, value in intervals.items()}  # test_auc_ci_low, ...

    def intervals(self, items: list[EncodedCommit], predictions: list[Prediction]) -> dict[str, float]:
        """Bootstrap intervals of auc, f1, mcc, precision, recall and max_f1 (1000 resamples, seed 0, BCa)."""
        scores = [float(score) for score in predictions]
        return flat_intervals(classification_intervals([item.label for item in items], scores))

    def truth(self, item: EncodedCommit) -> int:
        return item.label

    def predict_records(self, model: PreTrainedModel, records: list[CommitRecord], tokenizer: PreTrainedTokenizerBase,
                        device: torch.device) -> list[Prediction]:
        """P(defect) of each record (with expert features: scaled by the trial's saved scaler, set as `scaler`)."""
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        items = self.encode(records, tokenizer)
        scores, _ = self.scores(model, items, device)
        return list(scores)


TASK = DefectPrediction


@torch.no_grad()
def predict(model: PreTrainedModel, items: list[EncodedCommit], batch_size: int, pad_id: int,
            device: torch.device, pad_to: int | None = None) -> tuple[list[float], float]:
    """Defect probability per item (in input order) and the mean cross-entropy; `pad_to` as in training."""
    scores = [0.0] * len(items)
    total_loss = 0.0
    for indices in batch_indices(items, batch_size, seed=None, pad_to=pad_to):
        batch = {key: value.to(device) for key, value in collate([items[i] for i in indices], pad_id, pad_to).items()}
        with batch_features(model, batch):
            logits = model(**model_inputs(model, batch)).logits.float()
        total_loss += torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="sum").item()
        for index, score in zip(indices, torch.softmax(logits, dim=-1)[:, 1].tolist()):
            scores[index] = score
    return scores, total_loss / max(len(items), 1)


def model_inputs(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What the classifier reads of a batch. A decoder-only model also gets each token's position counted from its
    first real token, so a commit scores the same padded on the left or the right (absolute positions, GPT-2, and
    rotary ones alike); transformers' classifier then pools the last token that is not padding."""
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if decoder_only(model.config):
        inputs["position_ids"] = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    return inputs


def class_weights(items: list[EncodedCommit]) -> torch.Tensor:
    """Inverse class frequency, normalised so a balanced set gets weights of 1."""
    counts = np.bincount([item.label for item in items], minlength=2).astype(np.float64)
    return torch.tensor(len(items) / (2 * np.maximum(counts, 1)), dtype=torch.float32)
