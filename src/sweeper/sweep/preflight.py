"""Checks before a sweep starts, so mistakes cost seconds, not a failed trial per configuration.

Every method the search can pick, with every searched value of its own settings, is applied to
the backbone built on PyTorch's meta device (shapes only, no weights, no memory): a LoRA target
or adapter layer the backbone lacks is an error before Ray starts. Where trials can use expert
features, the expert-feature head is installed first, as a trial does: a backbone family it does not
support is an error too. So is a training setting that cannot work: `precision: fp16` or `quantization: 4bit` for
trials without a GPU, `gradient_checkpointing` on a model class without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig

from sweeper.backbone import embedded_backbone_dir, model_from_config, resolve_backbone
from sweeper.config import EMBEDDED_BACKBONE, TrialConfig
from sweeper.data.records import Dataset
from sweeper.data.split import trial_splits
from sweeper.errors import MethodError, SpecError, SweeperError
from sweeper.methods import apply_method
from sweeper.metrics.resolution import Resolution, split_resolution
from sweeper.precision import enable_gradient_checkpointing
from sweeper.spec import Spec, at_line
from sweeper.tasks.expert_head import install_expert_head


def candidate_configs(spec: Spec) -> list[tuple[str, str, TrialConfig]]:
    """(field, what, config): one per method the search can pick, and per searched choice of its settings."""
    method_choice = spec.search.get("method")
    methods = method_choice.choice if method_choice and method_choice.choice else [spec.defaults.method]
    method_field = "search.method" if method_choice else "defaults.method"
    candidates = []
    for method in methods:
        candidates.append((method_field, f"method {method}", spec.trial({"method": method})))
        for key, distribution in spec.search.items():
            if key.startswith(f"{method}.") and distribution.choice:
                for value in distribution.choice:
                    candidates.append((f"search.{key}", f"method {method} with {key}={value}",
                                       spec.trial({"method": method, key: value})))
    return candidates


def setting_field(spec: Spec, key: str, value: Any) -> str | None:
    """Where the spec can give trials `key: value`: `search.KEY` if it is among the searched choices, else
    `defaults.KEY` if it is the default; None if no trial gets it."""
    searched = spec.search.get(key)
    if searched is not None and searched.choice is not None:
        return f"search.{key}" if value in searched.choice else None
    return f"defaults.{key}" if getattr(spec.defaults, key) == value else None


def located(source: str, field: str) -> str:
    """`file:line` of a dotted field when the spec's source is a readable file, else the source as it is."""
    path = Path(source)
    text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    return at_line(source, text, field.split(".", 1)) if text else source


def check_methods(spec: Spec, source: str) -> None:
    """Apply each candidate method to a shapes-only backbone (with the expert-feature head where trials can have
    one); the first that fails is a SpecError."""
    model_config = AutoConfig.from_pretrained(resolve_backbone(spec.backbone, spec.task), num_labels=2)
    features = setting_field(spec, "features", "expert")
    checkpointing = setting_field(spec, "gradient_checkpointing", True)
    for field, what, config in candidate_configs(spec):
        with torch.device("meta"):
            model = model_from_config(model_config, spec.task, config.generation.decoder_layers)
            if features is not None:
                try:
                    install_expert_head(model)
                except MethodError as error:
                    raise SpecError(source, features, f"features: expert does not fit backbone '{spec.backbone}': "
                                    f"{error}") from None
        try:
            apply_method(model, config)
        except (MethodError, ValueError) as error:
            raise SpecError(source, field, f"{what} does not fit backbone '{spec.backbone}'"
                            + (" with the expert-feature head" if features else "") + f": {error}") from None
        if checkpointing:
            try:
                enable_gradient_checkpointing(model)
            except MethodError as error:
                raise SpecError(located(source, checkpointing), checkpointing, str(error)) from None


def check_spec_precision(spec: Spec, source: str) -> None:
    """fp16 needs a GPU: without one (`sweep.resources.gpu: 0`) Ray hides the GPUs from the trials."""
    field = setting_field(spec, "precision", "fp16")
    if field and spec.sweep.resources.gpu == 0:
        raise SpecError(located(source, field), field, "fp16 needs a GPU, and sweep.resources.gpu is 0: trials run "
                        "on CPUs", "use precision: bf16, which CPUs run too, or fp32; or set sweep.resources.gpu")


def check_quantization(spec: Spec, source: str) -> None:
    """A quantized base needs bitsandbytes' CUDA kernels: without a GPU (`sweep.resources.gpu: 0`) no trial has one."""
    for value in ("8bit", "4bit"):
        field = setting_field(spec, "quantization", value)
        if field and spec.sweep.resources.gpu == 0:
            raise SpecError(located(source, field), field, f"quantization: {value} needs a CUDA GPU (bitsandbytes), "
                            "and sweep.resources.gpu is 0: trials run on CPUs",
                            "use quantization: none, or set sweep.resources.gpu")


def preflight(spec: Spec, source: str) -> None:
    """All checks; raises SweeperError subclasses with one-line messages."""
    check_spec_precision(spec, source)
    check_quantization(spec, source)
    try:
        check_methods(spec, source)
    except OSError as error:
        raise SweeperError(f"cannot read the configuration of backbone '{spec.backbone}': {error}") from None


def check_before_trials(spec: Spec, source: str) -> tuple[Dataset, Resolution]:
    """Mistakes cost seconds, not a failed trial each: the backbone is built or found, the data read, validated
    and split (an unknown project is an error here), and every method the search can pick applied to the
    backbone's shapes. Printed too: the smallest difference the validation split can resolve."""
    if spec.backbone == EMBEDDED_BACKBONE:
        embedded_backbone_dir()
    dataset, splits = trial_splits(spec.base_trial())
    preflight(spec, source)
    resolution = split_resolution(spec.task, [record.label for record in splits.valid])
    print(f"resolution: {resolution.sentence}", flush=True)
    return dataset, resolution
