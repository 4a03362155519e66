"""Precision and memory keys: validated before any trial starts; accumulation gives the whole batch's update; bf16 on
a CPU trains every method with metrics close to fp32's, and `predict` scores as the trial evaluated."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AlbertConfig

from harness import small_trial, write_spec
from sweeper.artifacts import TrialArtifacts
from sweeper.predictions import read_predictions
from sweeper.tracking.schema import PREDICTIONS_FILE
from sweeper.data.split import trial_splits
from sweeper.errors import SpecError, SweeperError
from sweeper.methods import apply_method
from sweeper.precision import check_precision, gradient_scaler
from sweeper.step import accumulate
from sweeper.spec import load_spec
from sweeper.sweep.preflight import preflight
from sweeper.trained.predict import predict_records
from sweeper.recipe import prepare_data
from sweeper.trial import run_trial

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def one_thread() -> None:
    """As trials run (`threads: 1`): on a busy machine more threads only wait for each other."""
    torch.set_num_threads(1)


def test_precision_keys_are_validated() -> None:
    for key, value, words in [("precision", "fp8", "'auto', 'fp32', 'bf16' or 'fp16'"), ("grad_accum", 0, "greater than"),
                              ("cache_frozen", "sometimes", "'auto' or 'off'")]:
        with pytest.raises(SpecError, match=f"field '{key}': .*{words}"):
            small_trial("lora", **{key: value})
    assert small_trial("lora", cache_frozen=False).cache_frozen == "off"  # YAML's bare `off`
    with pytest.raises(SweeperError, match="field 'precision': fp16 needs a GPU.*use precision: auto, bf16"):
        check_precision("fp16", "cpu")
    check_precision("bf16", "cpu")


def test_fp16_without_a_gpu_is_a_spec_error_naming_the_line(tmp_path: Path) -> None:
    path = write_spec(tmp_path, "half", {"defaults.precision": "fp16"})
    with pytest.raises(SpecError) as caught:
        preflight(load_spec(path), str(path))
    line = path.read_text().splitlines().index("  precision: fp16") + 1
    assert str(caught.value).startswith(f"{path}:{line}: field 'defaults.precision': fp16 needs a GPU")
    assert "sweep.resources.gpu" in str(caught.value)
    path = write_spec(tmp_path, "half", {"search.precision": {"choice": ["fp32", "fp16"]},
                                         "sweep.resources": {"cpu": 1, "gpu": 0.5}})
    preflight(load_spec(path), str(path))  # trials get a GPU


def test_gradient_checkpointing_on_a_model_without_it_is_a_spec_error(tmp_path: Path) -> None:
    backbone = tmp_path / "albert"
    AlbertConfig(vocab_size=100, embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64).save_pretrained(backbone)
    path = write_spec(tmp_path, "albert", {"backbone": str(backbone), "search": {"method": {"choice": ["full"]}},
                                           "defaults.gradient_checkpointing": True})
    with pytest.raises(SpecError, match=r":\d+: field 'defaults.gradient_checkpointing': AlbertForSequenceClassification "
                                        "does not support gradient checkpointing"):
        preflight(load_spec(path), str(path))
    path = write_spec(tmp_path, "albert", {"backbone": str(backbone), "search": {"method": {"choice": ["full"]}}})
    preflight(load_spec(path), str(path))


@pytest.mark.parametrize("task", ["jitdp", "cmg"])
def test_accumulated_micro_batches_give_the_whole_batch_gradient(task: str) -> None:
    """fp64, dropout off (eval mode), the same commits: exact up to float64 rounding, whatever the micro-batches'
    padding, with class weights (defect prediction) or a mean over message tokens (generation)."""
    config = small_trial("lora", task, **{"data.sample": 120, "data.max_length": 32, "class_weighting": True})
    data = prepare_data(config)
    if task == "jitdp":
        data.task.loss_fn.weight = data.task.loss_fn.weight.double()
    items = data.train[:12]
    gradients = []
    for grad_accum in (1, 4, 12):
        torch.manual_seed(0)
        model = apply_method(data.task.load_model(config.backbone), config).double().eval()
        for parameter in model.parameters():
            if parameter.requires_grad:  # LoRA's B starts at 0: give every trained weight a gradient to compare
                parameter.data.normal_(0, 0.02)
        accumulate(model, data.task, items, config.with_overrides({"grad_accum": grad_accum}), CPU,
                   gradient_scaler(config, CPU))
        gradients.append({name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad})
    whole, *split = gradients
    for accumulated in split:
        for name, gradient in whole.items():
            torch.testing.assert_close(accumulated[name], gradient, rtol=1e-9, atol=1e-12, msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["jitdp", "cmg"])
def test_bf16_on_a_cpu_trains_every_method_close_to_fp32(task: str) -> None:
    """The toy backbones learn little in one epoch, so closeness is judged on the evaluation loss: bf16 keeps 8 bits
    of mantissa, so it may differ from fp32 by about 1 %; training with it must not break (NaN) or drift off."""
    for method in ("full", "adapter", "lora", "ia3"):
        config = small_trial(method, task, **{"data.sample": 120, "data.max_length": 32})
        fp32 = run_trial(config)
        bf16 = run_trial(config.with_overrides({"precision": "bf16", "grad_accum": 2}))
        assert bf16.metrics["eval_loss"] == pytest.approx(fp32.metrics["eval_loss"], rel=0.03), method
        assert bf16.costs["micro_batch_size"] == 8 and bf16.costs["effective_batch_size"] == 16


@pytest.mark.slow
@pytest.mark.parametrize("task", ["jitdp", "cmg"])
def test_predict_of_a_bf16_trial_gives_its_logged_predictions(task: str, tmp_path: Path) -> None:
    """`sweeper predict` runs the trial's task under the trial's autocast, as its evaluation did."""
    config = small_trial("lora", task, **{"data.sample": 120, "data.max_length": 32, "precision": "bf16"})
    run_trial(config, tmp_path)
    _, splits = trial_splits(config)
    trial = TrialArtifacts("local", "complete", config, {}, tmp_path)
    predicted = [p.message if task == "cmg" else p.probability for p in predict_records(trial, splits.valid)]
    assert predicted == read_predictions(tmp_path / PREDICTIONS_FILE).values
