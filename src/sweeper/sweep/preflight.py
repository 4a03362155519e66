"""Checks before a sweep starts, so mistakes cost seconds, not a failed trial per configuration.

Every method the search can pick, with every searched value of its own settings, is applied to
the backbone built on PyTorch's meta device (shapes only, no weights, no memory): a LoRA target
or adapter layer the backbone lacks is an error before Ray starts.
"""

from __future__ import annotations

import torch
from transformers import AutoConfig

from sweeper.backbone import model_from_config, resolve_backbone
from sweeper.config import TrialConfig
from sweeper.errors import MethodError, SpecError, SweeperError
from sweeper.methods import apply_method
from sweeper.spec import Spec

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


def check_methods(spec: Spec, source: str) -> None:
    """Apply each candidate method to a shapes-only backbone; the first that fails is a SpecError."""
    model_config = AutoConfig.from_pretrained(resolve_backbone(spec.backbone, spec.task), num_labels=2)
    for field, what, config in candidate_configs(spec):
        with torch.device("meta"):
            model = model_from_config(model_config, spec.task, config.generation.decoder_layers)
        try:
            apply_method(model, config)
        except (MethodError, ValueError) as error:
            raise SpecError(source, field, f"{what} does not fit backbone '{spec.backbone}': {error}") from None


def preflight(spec: Spec, source: str) -> None:
    """All checks; raises SweeperError subclasses with one-line messages."""
    try:
        check_methods(spec, source)
    except OSError as error:
        raise SweeperError(f"cannot read the configuration of backbone '{spec.backbone}': {error}") from None
