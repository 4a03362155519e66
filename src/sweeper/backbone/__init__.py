"""Backbones: the embedded defaults (built offline) or any hub name or local `save_pretrained` folder.

`embedded` means the embedded encoder (RoBERTa) for defect prediction and the embedded encoder-decoder
(BART) for message generation; both share one tokenizer. For message generation an encoder-only backbone
(CodeBERT, GraphCodeBERT, UniXcoder) gets a new decoder (`new_decoder`), as in the study.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from sweeper.backbone.embedded import embedded_backbone_dir
from sweeper.backbone.embedded_seq2seq import embedded_seq2seq_dir
from sweeper.backbone.new_decoder import decoder_only, encoder_only, with_new_decoder
from sweeper.errors import SweeperError
from sweeper.quantization import loading_options, prepared

__all__ = ["decoder_only", "embedded_backbone_dir", "embedded_seq2seq_dir", "load_classifier", "load_generator", "load_tokenizer",
           "model_from_config", "resolve_backbone"]

EMBEDDED = "embedded"
Loaded = TypeVar("Loaded")


def resolve_backbone(name: str, task: str = "jitdp") -> str:
    """`"embedded"` becomes the task's embedded backbone folder (built if needed); any other name is kept."""
    if name != EMBEDDED:
        return name
    return str(embedded_seq2seq_dir() if task == "cmg" else embedded_backbone_dir())


def load_tokenizer(name: str, task: str = "jitdp") -> PreTrainedTokenizerBase:
    """The backbone's tokenizer, with a pad token (its end token where it has none, as for most code LLMs);
    a `SweeperError` if it cannot be loaded."""
    return with_pad_token(_load(name, task, AutoTokenizer.from_pretrained), name)


def with_pad_token(tokenizer: PreTrainedTokenizerBase, name: str) -> PreTrainedTokenizerBase:
    """`tokenizer`, its pad token set to its end token where it has none (decoder-only tokenizers: GPT-2, Llama,
    Qwen base models): batches need one, and the attention mask, not the token, says what is padding."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise SweeperError(f"the tokenizer of backbone '{name}' has neither a pad nor an end token to pad with: "
                               "save it with a pad_token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_classifier(name: str, num_labels: int = 2, quantization: str = "none") -> PreTrainedModel:
    """The backbone with a new sequence-classification head (its base quantized as `quantization` says, see
    `sweeper.quantization`); a `SweeperError` if it cannot be loaded.

    A decoder-only model's classifier scores the last token that is not padding (transformers' own pooling,
    which finds it by `config.pad_token_id`): that id is set to the tokenizer's pad token, which batches pad with.
    """
    options = loading_options(quantization)
    model = _load(name, "jitdp", lambda path: AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=num_labels, **options))
    if decoder_only(model.config):
        model.config.pad_token_id = load_tokenizer(name).pad_token_id
    return prepared(model, quantization)


def load_generator(name: str, decoder_layers: int = 6, quantization: str = "none") -> PreTrainedModel:
    """The backbone as a text generator: an encoder-decoder (`AutoModelForSeq2SeqLM`), a decoder-only model
    (`AutoModelForCausalLM`), or an encoder-only model with a new decoder of `decoder_layers` layers; a pretrained
    base quantized as `quantization` says (`sweeper.quantization`)."""
    options = loading_options(quantization)

    def loader(path: str) -> PreTrainedModel:
        config = AutoConfig.from_pretrained(path)
        if encoder_only(config):
            tokenizer = AutoTokenizer.from_pretrained(path)
            start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
            end = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
            return with_new_decoder(AutoModel.from_pretrained(path), decoder_layers, start, end)
        kind = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
        return kind.from_pretrained(path, **options)

    return prepared(_load(name, "cmg", loader), quantization)


def model_from_config(config: PretrainedConfig, task: str, decoder_layers: int = 6) -> PreTrainedModel:
    """The model a task builds from a backbone's config, with fresh weights (on the meta device in a
    `torch.device("meta")` block): what `load_classifier` / `load_generator` would load, without the checkpoint."""
    if task != "cmg":
        return AutoModelForSequenceClassification.from_config(config)
    if encoder_only(config):
        start = config.bos_token_id if config.bos_token_id is not None else 0
        return with_new_decoder(AutoModel.from_config(config), decoder_layers, start, config.eos_token_id or start)
    return (AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM).from_config(config)


def _load(name: str, task: str, loader: Callable[[str], Loaded]) -> Loaded:
    """`loader(resolved name)`, quiet about the expected new head, load failures as one-line errors."""
    path = resolve_backbone(name, task)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return loader(path)
    except (OSError, ValueError) as error:
        raise SweeperError(
            f"cannot load backbone '{name}': give a hub name (needs internet) "
            "or a local folder saved with save_pretrained"
        ) from error
    finally:
        hf_logging.set_verbosity(verbosity)
