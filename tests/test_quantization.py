"""`quantization: none | 8bit | 4bit`: where it cannot run (no CUDA GPU here, `method: full`) it is a one-line spec
error before anything trains; the frozen-prefix cache stays off with it. (Quantized training itself needs a GPU
and bitsandbytes: not measured here.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from decoders import tiny_decoder
from harness import small_trial, write_spec
from sweeper.backbone import load_classifier
from sweeper.cache.frozen import frozen_prefix
from sweeper.errors import SpecError, SweeperError
from sweeper.spec import load_spec
from sweeper.sweep.preflight import preflight
from sweeper.trial import run_trial

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the errors of a machine without a GPU")


def test_quantization_is_validated_and_refused_with_full_fine_tuning() -> None:
    assert small_trial("lora").quantization == "none"
    with pytest.raises(SpecError, match=r"field 'quantization': .*'none', '8bit' or '4bit'"):
        small_trial("lora", quantization="2bit")
    with pytest.raises(SpecError, match=r"^--set: field 'quantization': quantization: 4bit freezes the base .*method: "
                                        r"full cannot train it \(use lora \(QLoRA\)"):
        small_trial("full", quantization="4bit")


@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
def test_a_quantized_trial_without_a_gpu_is_an_error_before_anything_loads(quantization: str, tmp_path: Path) -> None:
    backbone = tiny_decoder(tmp_path / "qwen2", "qwen2")
    with pytest.raises(SweeperError, match=rf"^field 'quantization': {quantization} needs a CUDA GPU \(bitsandbytes' "
                                           r"kernels\), and this trial runs on cpu: use quantization: none"):
        run_trial(small_trial("lora", backbone=backbone, quantization=quantization), tmp_path / "trial")
    assert not (tmp_path / "trial").exists()
    with pytest.raises(SweeperError, match="needs a CUDA GPU"):  # `sweeper predict` of such a trial, likewise
        load_classifier(backbone, quantization=quantization)


def test_a_sweep_of_quantized_trials_without_gpus_is_a_spec_error_naming_the_line(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "q", {"search": {"method": {"choice": ["lora"]},
                                                 "quantization": {"choice": ["none", "4bit"]}}})
    with pytest.raises(SpecError, match=r"q\.yaml:\d+: field 'search.quantization': quantization: 4bit needs a CUDA "
                                        r"GPU .*sweep.resources.gpu is 0"):
        preflight(load_spec(spec), str(spec))


def test_the_frozen_prefix_cache_is_off_with_a_quantized_base(tmp_path: Path) -> None:
    backbone = tiny_decoder(tmp_path / "llama", "llama", layers=3)
    config = small_trial("lora", backbone=backbone, quantization="4bit", **{"lora.layers": "2"})
    assert frozen_prefix(load_classifier(backbone), config).startswith("off: quantization 4bit")
    assert not isinstance(frozen_prefix(load_classifier(backbone), config.with_overrides({"quantization": "none"})),
                          str)
