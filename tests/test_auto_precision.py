"""`precision: auto`: bf16 where the device runs it fast (chosen from given CPU flags and GPU capabilities, so the
tests do not depend on the CPU running them), logged as the precision the trial ran at; frozen matrix weights held
in bf16, half the memory, the same numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harness import small_trial
from sweeper.predictions import read_predictions
from sweeper.tracking.schema import PREDICTIONS_FILE
from sweeper.config import TrialConfig
from sweeper.methods import apply_method
from sweeper.precision import CPU_FLAGS_VARIABLE, autocast, cpu_flags, fast_bf16, hold_frozen_weights, resolve_precision
from sweeper.tasks.defects import predict
from sweeper.recipe import predict_saved, prepare_data
from sweeper.trial import run_trial

CPU = torch.device("cpu")


@pytest.fixture
def flags(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """Set the CPU flags `auto` reads (as `$SWEEPER_CPU_FLAGS`) for one test."""
    def set_flags(text: str) -> None:
        monkeypatch.setenv(CPU_FLAGS_VARIABLE, text)
        cpu_flags.cache_clear()

    yield set_flags
    cpu_flags.cache_clear()


@pytest.mark.parametrize(("cpu", "expected"), [("fpu sse avx2 avx512f", "fp32"), ("avx512f avx512_bf16", "bf16"),
                                               ("amx_tile amx_bf16 amx_int8", "bf16"), ("", "fp32")])
def test_auto_picks_bf16_on_cpus_with_bf16_matrix_instructions(flags, cpu: str, expected: str) -> None:
    flags(cpu)
    assert resolve_precision("auto", CPU) == expected
    assert resolve_precision("fp32", CPU) == "fp32" and resolve_precision("bf16", CPU) == "bf16"


@pytest.mark.parametrize(("capability", "fast"), [((7, 0), False), ((7, 5), False), ((8, 0), True), ((9, 0), True)])
def test_auto_picks_bf16_on_gpus_of_compute_capability_8_or_more(capability: tuple[int, int], fast: bool) -> None:
    assert fast_bf16("cuda", frozenset({"amx_bf16"}), capability) is fast  # the host's CPU does not count


def test_auto_is_the_default() -> None:
    assert TrialConfig().precision == "auto"


def matrix_bytes(model: torch.nn.Module) -> int:
    """Bytes of the frozen weights and biases of the model's linear layers."""
    return sum(p.numel() * p.element_size() for module in model.modules() if isinstance(module, torch.nn.Linear)
               for p in module.parameters(recurse=False) if not p.requires_grad)


def test_frozen_weights_held_in_bf16_take_half_the_memory_and_give_the_same_logits() -> None:
    config = small_trial("lora", **{"data.sample": 60, "precision": "bf16"})
    data = prepare_data(config)
    models = []
    for hold in (False, True):
        torch.manual_seed(0)
        model = apply_method(data.task.load_model(config.backbone), config).eval()
        frozen_bytes = matrix_bytes(model)
        converted = hold_frozen_weights(model, config) if hold else 0
        models.append((model, frozen_bytes, converted))
    (plain, before, _), (held, _, converted) = models
    assert converted > 0 and matrix_bytes(held) == before // 2  # embeddings and norms stay as they are
    assert all(p.dtype == torch.float32 for p in held.parameters() if p.requires_grad)
    with autocast(config, CPU):
        assert predict(held, data.valid, 16, data.task.pad_id, CPU) == predict(plain, data.valid, 16,
                                                                               data.task.pad_id, CPU)
    assert hold_frozen_weights(plain, config.with_overrides({"precision": "fp32"})) == 0


@pytest.mark.slow
def test_an_auto_trial_on_a_bf16_cpu_runs_logs_and_repeats_at_bf16(flags, tmp_path: Path) -> None:
    flags("avx512f amx_bf16")
    config = small_trial("lora", **{"data.sample": 120})
    result = run_trial(config, tmp_path)
    assert result.tags["sweeper.precision"] == "bf16"
    assert json.loads((tmp_path / "config.json").read_text())["precision"] == "bf16"
    assert run_trial(config).metrics == result.metrics
    flags("")  # reloaded on a CPU without bf16: still the precision it trained at
    assert predict_saved(tmp_path) == read_predictions(tmp_path / PREDICTIONS_FILE).values
    assert run_trial(config).tags["sweeper.precision"] == "fp32"
