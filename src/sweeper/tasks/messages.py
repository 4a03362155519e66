"""Commit message generation: an encoder-decoder or a decoder-only model writes the message of a diff.

Training minimises the cross-entropy of the message tokens (for a decoder-only model, the loss covers
the message alone, not the diff before it). Each evaluation computes the evaluation loss, which is cheap;
messages are generated (greedy or beam search) and scored with BLEU, ROUGE-L and exact match when
asked for (`generation.every`) and once at the end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from sweeper.backbone import load_generator
from sweeper.data.batching import IGNORED_LABEL, batch_indices, collate
from sweeper.data.encoding import EncodedCommit, encode_for_generation
from sweeper.data.records import CommitRecord
from sweeper.metrics.bootstrap import flat_intervals, text_intervals
from sweeper.metrics.text import generation_metrics
from sweeper.precision import autocast
from sweeper.predictions import MESSAGES, Prediction
from sweeper.tasks.base import Scores

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from sweeper.config import TrialConfig


class MessageGeneration:
    """Diff in, message out: the evaluation loss at each evaluation; BLEU, ROUGE-L, exact match on generated text."""

    name = "cmg"
    metrics = ("eval_loss",)
    generated_metrics = ("bleu", "corpus_bleu", "rouge_l", "exact_match")
    lower_is_better = ("eval_loss",)
    shown = ("bleu", "rouge_l", "exact_match")
    prediction_columns = MESSAGES
    scaler = None  # no expert features for message generation

    def __init__(self, config: TrialConfig) -> None:
        self.config = config
        self.tokenizer: PreTrainedTokenizerBase | None = None
        self.pad_id = 0
        self.end_id = 0
        self.prompt_pad_id = 0  # pads decoder-only prompts for generation: never the end token that closes a prompt

    def fit(self, train: list[CommitRecord]) -> None:
        """Nothing to learn before encoding."""

    def load_model(self, backbone: str) -> PreTrainedModel:
        return load_generator(backbone, self.config.generation.decoder_layers, self.config.quantization)

    def encode(self, records: list[CommitRecord], tokenizer: PreTrainedTokenizerBase) -> list[EncodedCommit]:
        data = self.config.data
        return encode_for_generation(records, tokenizer, data.max_length, data.message_tokens, data.message,
                                     data.clean_message)

    def prepare(self, train: list[EncodedCommit], tokenizer: PreTrainedTokenizerBase, device: torch.device) -> None:
        self.tokenizer = tokenizer
        self.end_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.end_id
        self.prompt_pad_id = prompt_pad_id(tokenizer, self.end_id)

    def batch(self, model: PreTrainedModel, items: list[EncodedCommit], device: torch.device) -> dict[str, torch.Tensor]:
        """Inputs and labels for the loss: diff and message apart (encoder-decoder), or one after the other."""
        if model.config.is_encoder_decoder:
            batch = collate(items, self.pad_id, self.config.data.pad_to)
        else:
            batch = self.causal_batch(items)
        return {key: value.to(device) for key, value in batch.items()}

    def causal_batch(self, items: list[EncodedCommit]) -> dict[str, torch.Tensor]:
        """Diff, end token, message, end token in one right-padded row; labels only on the message part."""
        rows = [(self.prompt(item), self.target(item)) for item in items]
        width = max(len(prompt) + len(target) for prompt, target in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORED_LABEL, dtype=torch.long)
        for row, (prompt, target) in enumerate(rows):
            length = len(prompt) + len(target)
            input_ids[row, :length] = torch.tensor(prompt + target)
            attention_mask[row, :length] = 1
            labels[row, len(prompt):length] = torch.tensor(target)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    def prompt(self, item: EncodedCommit) -> list[int]:
        """A decoder-only model's prompt: the diff, closed by the end token (the separator before the message)."""
        return item.input_ids if item.input_ids[-1:] == [self.end_id] else item.input_ids + [self.end_id]

    def target(self, item: EncodedCommit) -> list[int]:
        """A decoder-only model's target: the message, closed by the end token so generation learns to stop."""
        return item.target_ids if item.target_ids[-1:] == [self.end_id] else item.target_ids + [self.end_id]

    def loss(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**batch).loss

    @torch.no_grad()
    def evaluate(self, model: PreTrainedModel, items: list[EncodedCommit], device: torch.device,
                 score: bool) -> Scores:
        with autocast(self.config, device):  # as it trained: evaluation, test and `sweeper predict` alike
            metrics = {"eval_loss": self.eval_loss(model, items, device)}
            if not score:
                return Scores(metrics, [], scored=False)
            predictions = self.generate(model, items, device)
        metrics |= generation_metrics([item.reference for item in items], predictions)
        return Scores(metrics, list(predictions))

    def eval_loss(self, model: PreTrainedModel, items: list[EncodedCommit], device: torch.device) -> float:
        """Mean cross-entropy per message token over `items`."""
        total, tokens = 0.0, 0
        for indices in batch_indices(items, self.config.eval_batch_size, seed=None):
            batch = self.batch(model, [items[i] for i in indices], device)
            logits = model(**batch).logits.float()
            labels = batch["labels"]
            if not model.config.is_encoder_decoder:  # position t predicts token t + 1
                logits, labels = logits[:, :-1], labels[:, 1:]
            total += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                       ignore_index=IGNORED_LABEL, reduction="sum").item()
            tokens += int((labels != IGNORED_LABEL).sum())
        return total / max(tokens, 1)

    def generate(self, model: PreTrainedModel, items: list[EncodedCommit], device: torch.device) -> list[str]:
        """One message per item (in input order), by greedy or beam search as the config says."""
        assert self.tokenizer is not None, "prepare() first"
        settings = self.config.generation
        messages = [""] * len(items)
        for indices in batch_indices(items, self.config.eval_batch_size, seed=None):
            prompts = [items[i].input_ids if model.config.is_encoder_decoder else self.prompt(items[i]) for i in indices]
            input_ids, attention_mask = self.left_padded(prompts) if not model.config.is_encoder_decoder \
                else self.right_padded(prompts)
            pad_id = self.pad_id if model.config.is_encoder_decoder else self.prompt_pad_id
            output = model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                                    num_beams=settings.num_beams, max_new_tokens=settings.max_new_tokens,
                                    do_sample=False, pad_token_id=pad_id, eos_token_id=self.end_id)
            if not model.config.is_encoder_decoder:  # the continuation, up to its end token (then filler)
                output = [until_end(row, self.end_id) for row in output[:, input_ids.shape[1]:].tolist()]
            texts = self.tokenizer.batch_decode(output, skip_special_tokens=True, clean_up_tokenization_spaces=False)
            for index, text in zip(indices, texts):
                messages[index] = " ".join(text.split())
        return messages

    def right_padded(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(row) for row in rows)
        ids = torch.tensor([row + [self.pad_id] * (width - len(row)) for row in rows])
        mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows])
        return ids, mask

    def left_padded(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder-only generation continues each row at its end, so padding goes on the left, with a pad id that
        is not the end token closing every prompt (transformers takes a prompt ending in the pad id for right
        padding, and warns)."""
        width = max(len(row) for row in rows)
        ids = torch.tensor([[self.prompt_pad_id] * (width - len(row)) + row for row in rows])
        mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in rows])
        return ids, mask

    def test_metrics(self, model: PreTrainedModel, items: list[EncodedCommit], device: torch.device,
                     best: dict[str, float]) -> dict[str, float]:
        scored = self.evaluate(model, items, device, score=True)
        intervals = self.intervals(items, scored.predictions)  # bleu_ci_low, ...: for the report's held-out section
        return {f"test_{name}": value for name, value in (scored.metrics | intervals).items()}

    def intervals(self, items: list[EncodedCommit], predictions: list[Prediction]) -> dict[str, float]:
        """Bootstrap intervals of bleu, corpus_bleu, rouge_l and exact_match of the generated messages."""
        return flat_intervals(text_intervals([item.reference for item in items], [str(p) for p in predictions]))

    def truth(self, item: EncodedCommit) -> str:
        return item.reference

    def predict_records(self, model: PreTrainedModel, records: list[CommitRecord], tokenizer: PreTrainedTokenizerBase,
                        device: torch.device) -> list[Prediction]:
        """The message the model writes for each record's diff (its own message, if any, is ignored)."""
        data = self.config.data
        items = encode_for_generation(records, tokenizer, data.max_length, data.message_tokens, keep_without_message=True)
        self.prepare(items, tokenizer, device)
        with autocast(self.config, device):
            return list(self.generate(model, items, device))


TASK = MessageGeneration


def prompt_pad_id(tokenizer: PreTrainedTokenizerBase, end_id: int) -> int:
    """A token id to pad decoder-only prompts with that differs from `end_id`: the pad token where it is distinct
    (many code LLMs pad with their end token), else another special token, else any other id (the attention mask
    hides it, and `until_end` drops what generation writes after the end)."""
    candidates = [tokenizer.pad_token_id, *tokenizer.all_special_ids, 0, 1]
    return next(token for token in candidates if token is not None and token != end_id)


def until_end(row: list[int], end_id: int) -> list[int]:
    """A generated continuation up to (without) its first end token."""
    return row[:row.index(end_id)] if end_id in row else row
