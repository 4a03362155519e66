"""Specs and overrides: valid ones load, bad ones give one clear error naming file, line and field."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from sweeper.config import TrialConfig
from sweeper.errors import SpecError
from sweeper.sweep.space import define_by_run
from sweeper.spec import load_spec, parse_overrides

SPACES = sorted((Path(__file__).parent.parent / "search_spaces").glob("*.yaml"))


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
def test_shipped_specs_load(path: Path) -> None:
    spec = load_spec(path)
    assert spec.name == path.stem
    assert spec.base_trial().metric == spec.metric


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "line", "field", "words"), [
    ("name: x\nsweep:\n  trails: 3\n", 3, "sweep.trails", "did you mean 'trials'"),
    ("name: x\nsearch:\n  lr: {loguniform: [1.0e-3, 1.0e-5]}\n", 3, "search.lr", "inverted"),
    ("name: x\nsearch:\n  lr: {choice: []}\n", 3, "search.lr", "at least one value"),
    ("name: x\nsearch:\n  lora.rnk: {choice: [4]}\n", 3, "search.lora.rnk", "did you mean 'lora.rank'"),
    ("name: x\nsweep:\n  pruner: {kind: medain}\n", 3, "sweep.pruner.kind", "'median'"),
    ("name: x\ndefaults:\n  lr: -1\n", 3, "defaults.lr", "greater than 0"),
    ("name: x\nsearch:\n  method: {choice: [lora, qlora]}\n", 3, "method", "'full'"),
])
def test_bad_spec_names_line_field_and_fix(tmp_path: Path, text: str, line: int, field: str, words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: field '{field}'"), message
    assert words in message


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nsweep:\n  trials: [1\n  bad: }\n")
    with pytest.raises(SpecError, match=rf"{path}:\d+: .*not valid YAML"):
        load_spec(path)


def test_overrides_parse_and_validate() -> None:
    config = TrialConfig().with_overrides(parse_overrides(["method=lora", "lora.rank=8", "lr=1e-4",
                                                           "lora.targets=[query, key]"]))
    assert (config.method, config.lora.rank, config.lr, config.lora.targets) == ("lora", 8, 1e-4, ["query", "key"])
    with pytest.raises(SpecError, match="did you mean 'rank'"):
        TrialConfig().with_overrides({"lora.rnak": "8"})
    with pytest.raises(SpecError, match="KEY=VALUE"):
        parse_overrides(["lr"])


def test_flat_params_round_trip() -> None:
    config = TrialConfig().with_overrides({"method": "adapter", "lr": 3.3e-5, "adapter.layers": [0, 2]})
    assert TrialConfig.from_flat({key: str(value) for key, value in config.flat().items()}) == config


def test_conditional_parameters_exist_only_for_their_method(tmp_path: Path) -> None:
    spec = load_spec(Path(__file__).parent.parent / "search_spaces" / "smoke.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    suggest = define_by_run(spec)
    seen = set()
    for _ in range(30):
        values = suggest(study.ask())
        seen.add(values["method"])
        assert ("lora.rank" in values) == (values["method"] == "lora")
        assert ("adapter.placement" in values) == (values["method"] == "adapter")
        spec.trial(values)  # every sampled combination is a valid trial
    assert seen == {"full", "adapter", "lora"}


def test_a_method_the_backbone_cannot_take_is_an_error_before_any_trial(tmp_path: Path) -> None:
    from sweeper.sweep.preflight import preflight

    path = write(tmp_path, "name: x\nsearch:\n  method: {choice: [lora]}\n  lora.targets: {choice: [[query], [q_proj]]}\n")
    spec = load_spec(path)  # the spec itself is well-formed
    with pytest.raises(SpecError) as caught:
        preflight(spec, str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: field 'search.lora.targets': method lora with lora.targets=['q_proj']")
    assert "neither a role" in message and "attention.self.query" in message
