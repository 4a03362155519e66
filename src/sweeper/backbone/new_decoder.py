"""The study's message-generation setup for encoder-only backbones (CodeBERT, GraphCodeBERT, UniXcoder): the
pretrained encoder plus a new, randomly initialised Transformer decoder that always trains.

The model is Hugging Face's `EncoderDecoderModel`: the encoder as the checkpoint has it, the decoder a causal LM of
the encoder's own architecture (same width, `layers` deep, with cross-attention), so `generate`, `save_pretrained`
and `from_pretrained` work as for any encoder-decoder. The decoder starts from copies of the encoder's embeddings
(the study's decoder shared them; a copy keeps the encoder's frozen under PEFT). Every method treats the decoder as
the task head: it trains in full under adapters and LoRA too (see `sweeper.methods.roles.head_names`).

    >>> from transformers import RobertaConfig, RobertaModel
    >>> encoder = RobertaModel(RobertaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
    ...                                      num_attention_heads=2, intermediate_size=32))
    >>> model = with_new_decoder(encoder, layers=3, start_id=0, end_id=2)
    >>> model.config.decoder.num_hidden_layers, model.config.decoder.add_cross_attention
    (3, True)
"""

from __future__ import annotations

import warnings

import torch
from transformers import AutoModelForCausalLM, EncoderDecoderModel, PretrainedConfig, PreTrainedModel

# Encoder-only architectures that get a new decoder for message generation; each has a causal-LM class with
# cross-attention (BertLMHeadModel, RobertaForCausalLM, ...) to build the decoder from.
ENCODER_ONLY = ("bert", "roberta", "xlm-roberta", "electra")
# Decoder-only (causal) families sweeper maps (roles, the expert head, the frozen-prefix cache): GPT-2 and
# StarCoder, Llama and CodeLlama, Mistral, Qwen2/Qwen2.5(-Coder), Qwen3, StarCoder2.
DECODER_ONLY = ("gpt2", "gpt_bigcode", "llama", "mistral", "qwen2", "qwen3", "starcoder2")

# EncoderDecoderModel warns at its first loss that the loss moved into it in 2021, and about its own tensor copy.
warnings.filterwarnings("ignore", message="Version v4.12.0 introduces a better way", category=FutureWarning)
warnings.filterwarnings("ignore", message="To copy construct from a tensor", category=UserWarning,
                        module="transformers.models.encoder_decoder")


def encoder_only(config: PretrainedConfig) -> bool:
    """Whether a checkpoint's config is an encoder-only model (not one already saved as a decoder)."""
    return config.model_type in ENCODER_ONLY and not config.is_decoder and not config.is_encoder_decoder


def decoder_only(config: PretrainedConfig) -> bool:
    """Whether a config is one of the decoder-only families sweeper maps (`DECODER_ONLY`)."""
    return config.model_type in DECODER_ONLY and not config.is_encoder_decoder


def decoder_config(encoder: PretrainedConfig, layers: int) -> PretrainedConfig:
    """The encoder's config, `layers` deep, as a decoder with cross-attention to the encoder."""
    config = encoder.__class__.from_dict(encoder.to_dict())
    config.num_hidden_layers = layers
    config.is_decoder = True
    config.add_cross_attention = True
    config.architectures = None
    return config


def with_new_decoder(encoder: PreTrainedModel, layers: int, start_id: int, end_id: int) -> EncoderDecoderModel:
    """`encoder` with a new decoder of `layers` layers (random weights from torch's generator, embeddings copied
    from the encoder); generation starts at `start_id` and stops at `end_id`."""
    decoder = AutoModelForCausalLM.from_config(decoder_config(encoder.config, layers))
    with torch.no_grad():  # copied in place: the output projection, tied to the word embeddings, follows
        decoder.base_model.embeddings.load_state_dict(encoder.embeddings.state_dict())
    model = EncoderDecoderModel(encoder=encoder, decoder=decoder)
    pad_id = encoder.config.pad_token_id
    for settings in (model.config, model.generation_config):
        settings.decoder_start_token_id = start_id
        settings.bos_token_id = start_id
        settings.eos_token_id = end_id
        settings.pad_token_id = pad_id if pad_id is not None else end_id
    return model
