"""Memory planning: the estimate made before training is within the stated error of the measured peak on a CPU,
and a configuration that cannot fit fails before it trains, with the figures and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from decoders import tiny_decoder
from harness import small_trial
from sweeper.errors import SweeperError
from sweeper.memory import STATED_ERROR, MemoryPlanError
from sweeper.trial import run_trial

# Large enough that the model's memory, not the process's, drives the peak: 4 layers of width 256.
SHAPE = {"layers": 4, "hidden": 256, "heads": 4, "ffn": 1024}
TRIAL = {"data.sample": 200, "data.max_length": 128, "batch_size": 16, "precision": "fp32"}
CMG = {"task": "cmg", "data.path": "bundled:cmg", "metric": "eval_loss", "mode": "min"}


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> str:
    return tiny_decoder(tmp_path_factory.mktemp("memory") / "qwen2", "qwen2", **SHAPE)


@pytest.mark.slow
@pytest.mark.parametrize(("method", "settings"), [("full", {}), ("lora", {}), ("full", {"gradient_checkpointing": True}),
                                                  ("full", CMG)])
def test_the_estimate_is_within_the_stated_error_of_the_measured_peak(backbone: str, method: str,
                                                                      settings: dict) -> None:
    result = run_trial(small_trial(method, backbone=backbone, **TRIAL, **settings))
    estimated, measured = result.costs["estimated_memory_mb"], result.costs["peak_memory_mb"]
    assert abs(estimated - measured) <= STATED_ERROR * measured, (estimated, measured)
    assert result.tags["sweeper.memory_plan"].startswith(f"estimated {estimated:.0f} MB of ")


def test_a_configuration_that_cannot_fit_fails_before_it_trains(backbone: str, tmp_path: Path) -> None:
    config = small_trial("full", backbone=backbone, **{**TRIAL, "batch_size": 4096, "data.max_length": 4096})
    with pytest.raises(MemoryPlanError, match=r"estimated peak memory [\d.]+ GB \(weights .*activations .*\) exceeds "
                                              r"the [\d.]+ GB of available RAM: lower batch_size .* gradient_checkp"):
        run_trial(config, tmp_path / "trial")
    assert issubclass(MemoryPlanError, SweeperError)  # a sweep records it as the trial's failure, not retried
    assert not (tmp_path / "trial").exists()


def test_dimensions_of_an_encoder_with_a_new_decoder_are_its_encoders() -> None:
    """An EncoderDecoderConfig names no hidden size of its own (a StopIteration here ended CMG trials of an encoder
    with a new decoder inside Ray without a result)."""
    from transformers import BertConfig, EncoderDecoderConfig

    from sweeper.memory import dimensions

    encoder = BertConfig(hidden_size=64, intermediate_size=128, num_attention_heads=4, vocab_size=500)
    config = EncoderDecoderConfig.from_encoder_decoder_configs(encoder, BertConfig(hidden_size=32))
    assert dimensions(config) == (64, 128, 4, 500)
