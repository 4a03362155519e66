"""Message generation on an encoder-only backbone (the study's CodeBERT setup): the encoder plus a new decoder that
always trains; every method adapts the encoder only. Training, reloading and reproducing such trials in a sweep:
`test_study_sweeps.py`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import (BartConfig, BertConfig, EncoderDecoderModel, GPT2Config, RobertaConfig, RobertaModel,
                          T5Config)

from harness import write_spec
from sweeper.backbone import load_tokenizer, model_from_config
from sweeper.backbone.new_decoder import encoder_only, with_new_decoder
from sweeper.config import TrialConfig
from sweeper.errors import SpecError
from sweeper.methods import apply_method, count_parameters
from sweeper.methods.roles import count_layers
from sweeper.spec import load_spec
from sweeper.sweep.preflight import check_methods

METHOD_MODULES = ("lora_", "adapters.", "ia3_")  # what LoRA, adapters and IA3 add to a model


def tiny_roberta_config(**changes: object) -> RobertaConfig:
    tokenizer = load_tokenizer("embedded")
    return RobertaConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=128, max_position_embeddings=130, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, **changes)


@pytest.fixture(scope="module")
def tiny_roberta(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A randomly initialised 2-layer RoBERTa encoder with the embedded tokenizer, saved as a backbone folder."""
    folder = tmp_path_factory.mktemp("tiny-roberta")
    torch.manual_seed(0)
    RobertaModel(tiny_roberta_config()).save_pretrained(folder)
    load_tokenizer("embedded").save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize(("config", "expected"), [
    (RobertaConfig(), True), (BertConfig(), True), (RobertaConfig(is_decoder=True), False),
    (BartConfig(), False), (T5Config(), False), (GPT2Config(), False),
])
def test_only_encoder_only_configs_get_a_new_decoder(config: object, expected: bool) -> None:
    assert encoder_only(config) is expected


def test_the_new_decoder_has_its_depth_cross_attention_and_copies_of_the_encoders_embeddings() -> None:
    torch.manual_seed(0)
    encoder = RobertaModel(tiny_roberta_config())
    model = with_new_decoder(encoder, layers=3, start_id=0, end_id=2)
    decoder = model.decoder
    assert len(decoder.roberta.encoder.layer) == 3 and len(model.encoder.encoder.layer) == 2
    assert all(layer.crossattention is not None for layer in decoder.roberta.encoder.layer)
    words, copied = encoder.embeddings.word_embeddings.weight, decoder.get_input_embeddings().weight
    assert torch.equal(words, copied) and words.data_ptr() != copied.data_ptr()  # a copy, not shared
    assert decoder.get_output_embeddings().weight.data_ptr() == copied.data_ptr()  # the LM head follows it
    assert (model.config.decoder_start_token_id, model.generation_config.eos_token_id) == (0, 2)


def test_a_bert_encoder_gets_a_bert_decoder() -> None:
    with torch.device("meta"):
        model = model_from_config(BertConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=2,
                                             intermediate_size=128), "cmg", decoder_layers=1)
    assert isinstance(model, EncoderDecoderModel) and type(model.decoder).__name__ == "BertLMHeadModel"
    assert len(model.decoder.bert.encoder.layer) == 1


@pytest.mark.parametrize("method", ["full", "adapter", "lora", "ia3"])
def test_every_method_trains_the_whole_decoder_and_adapts_the_encoder_only(method: str) -> None:
    torch.manual_seed(0)
    model = with_new_decoder(RobertaModel(tiny_roberta_config()), layers=2, start_id=0, end_id=2)
    decoder_size = sum(p.numel() for p in model.decoder.parameters())
    assert count_layers(model) == 2  # the encoder's layers: the decoder is the head
    config = TrialConfig().with_overrides({"task": "cmg", "method": method, "adapter.bottleneck": 8, "lora.rank": 4})
    trained = apply_method(model, config)
    names = {name: p for name, p in trained.named_parameters() if p.requires_grad}
    in_decoder = {name for name in names if ".decoder." in f".{name}" and "original_module" not in name}
    added = [name for name in names if any(marker in name for marker in METHOD_MODULES)]
    assert sum(names[name].numel() for name in in_decoder) == decoder_size
    if method == "full":
        assert count_parameters(trained)[0] == count_parameters(trained)[1]
    else:
        assert added and all(".encoder.encoder.layer." in f".{name}" for name in added)
        assert set(names) == in_decoder | set(added)


def test_preflight_checks_methods_against_the_encoder(tiny_roberta: str, tmp_path: Path) -> None:
    changes = {"task": "cmg", "backbone": tiny_roberta, "data.path": "bundled:cmg", "metric": "eval_loss",
               "mode": "min", "search": {"method": {"choice": ["full", "adapter", "lora"]}}}
    spec = write_spec(tmp_path, "cmg-encoder", changes)
    check_methods(load_spec(spec), str(spec))
    spec = write_spec(tmp_path, "cmg-encoder", changes | {"defaults.lora.layers": "0-3"})
    with pytest.raises(SpecError, match=r"method lora does not fit.*out of range, the model has layers 0-1"):
        check_methods(load_spec(spec), str(spec))
