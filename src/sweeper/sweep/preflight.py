"""Checks before a sweep starts, so mistakes cost seconds, not a failed trial per configuration.

Every method the search can pick, with every searched value of its own settings, is applied to
the backbone built on PyTorch's meta device (shapes only, no weights, no memory): a LoRA target
or adapter layer the backbone lacks is an error before Ray starts. Where trials can use expert
features, the expert-feature head is installed first, as a trial does: a backbone family it does not
support is an error too.
"""

from __future__ import annotations

import torch
from transformers import AutoConfig

from sweeper.backbone import model_from_config, resolve_backbone
from sweeper.config import TrialConfig
from sweeper.errors import MethodError, SpecError, SweeperError
from sweeper.methods import apply_method
from sweeper.spec import Spec
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


def expert_field(spec: Spec) -> str | None:
    """Where the spec lets trials use expert features (`search.features` or `defaults.features`); None if nowhere."""
    searched = spec.search.get("features")
    if searched is not None and "expert" in (searched.choice or []):
        return "search.features"
    return "defaults.features" if spec.defaults.features == "expert" else None


def check_methods(spec: Spec, source: str) -> None:
    """Apply each candidate method to a shapes-only backbone (with the expert-feature head where trials can have
    one); the first that fails is a SpecError."""
    model_config = AutoConfig.from_pretrained(resolve_backbone(spec.backbone, spec.task), num_labels=2)
    features = expert_field(spec)
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


def preflight(spec: Spec, source: str) -> None:
    """All checks; raises SweeperError subclasses with one-line messages."""
    try:
        check_methods(spec, source)
    except OSError as error:
        raise SweeperError(f"cannot read the configuration of backbone '{spec.backbone}': {error}") from None
