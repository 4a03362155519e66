"""The resolved configuration of one trial: everything needed to train it again, nothing more.

A sweep samples values into a `TrialConfig`; MLflow logs it flattened (`lora.rank`, `lr`, ...);
`reproduce` reads the flat params back with `TrialConfig.from_flat`.

    >>> config = TrialConfig().with_overrides({"method": "lora", "lora.rank": "8", "lr": "1e-4"})
    >>> config.lora.rank
    8
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from sweeper.errors import SpecError

EMBEDDED_BACKBONE = "embedded"
MethodName = Literal["full", "adapter", "lora", "ia3"]
TaskName = Literal["jitdp", "cmg"]
Layers = Annotated[Literal["all"] | list[int] | str, BeforeValidator(lambda v: [v] if isinstance(v, int) else v)]
LAYERS_HELP = ("layers to adapt, numbered from 0 (an encoder-decoder numbers its decoder layers after its "
               "encoder's): 'all', a list [0, 1, 5], indices and inclusive ranges '0-5' or '0-2,7', "
               "or 'not ...' for every layer except those, e.g. 'not 0-1'")


class Section(BaseModel):
    """A config section: unknown keys are errors, values are checked on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SplitConfig(Section):
    """How records are split: `random` (stratified on label, seeded) or `time` (older commits train)."""

    kind: Literal["random", "time"] = "time"
    valid: float = Field(0.2, gt=0, lt=1, description="share of records for validation")
    test: float = Field(0.0, ge=0, lt=1, description="share of records held out for a final test")


class DataConfig(Section):
    """Where the commits come from and how they are split and encoded."""

    path: str = Field("bundled:jitdp", description="file path, s3:// URI or bundled:jitdp / bundled:cmg")
    sample: int | None = Field(None, gt=0, description="keep this many records (seeded, order kept)")
    skip_bad: bool = Field(False, description="skip malformed lines (counted and reported) instead of failing")
    split: SplitConfig = SplitConfig()
    max_length: int = Field(256, ge=16, le=4096, description="tokens per input, after truncation")
    message_tokens: int = Field(64, ge=0, description="token budget of the commit message: part of the input "
                                                         "for jitdp, the target to generate for cmg")
    message: Literal["first_line", "full"] = Field("first_line", description="cmg: the message to generate")
    clean_message: bool = Field(False, description="cmg: drop issue references (#123, gh-123) and trailer lines "
                                                   "(Signed-off-by:, Co-authored-by:, git-svn-id:) from the target")
    pad_to: int | None = Field(None, ge=16, le=4096,
                               description="pad every batch to this many tokens, unbucketed (the study's recipe: 512); "
                                           "default: pad each length-bucketed batch to its own longest input")

    @model_validator(mode="after")
    def pad_to_fits(self) -> "DataConfig":
        if self.pad_to is not None and self.pad_to < self.max_length:
            raise ValueError(f"pad_to ({self.pad_to}) is below max_length ({self.max_length}): "
                             f"set pad_to >= max_length, or leave it out")
        return self


class LoraSettings(Section):
    """PEFT LoRA (and DoRA with `dora: true`)."""

    rank: int = Field(8, ge=1)
    alpha: float = Field(16, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    targets: list[str] = Field(default_factory=lambda: ["query", "value"],
                               description="roles (query, key, value, attention_output, ffn_in, ffn_out) or module names")
    layers: Layers = Field("all", description=LAYERS_HELP)
    dora: bool = False


class AdapterSettings(Section):
    """Bottleneck adapters (AdapterHub `adapters`)."""

    placement: Literal["attention", "ffn", "houlsby", "parallel"] = "houlsby"
    bottleneck: int | None = Field(None, ge=1, description="bottleneck size; overrides reduction_factor")
    reduction_factor: float = Field(16, gt=0)
    layers: Layers = Field("all", description=LAYERS_HELP)
    non_linearity: Literal["relu", "gelu", "swish", "tanh"] = "relu"


class IA3Settings(Section):
    """PEFT IA3: learned scaling vectors on the key, value and feed-forward activations."""

    targets: list[str] = Field(default_factory=lambda: ["key", "value", "ffn_out"])
    feedforward: list[str] = Field(default_factory=lambda: ["ffn_out"])
    layers: Layers = Field("all", description=LAYERS_HELP)


class GenerationSettings(Section):
    """Commit message generation: decoding and how often the generated messages are scored."""

    num_beams: int = Field(1, ge=1, description="1: greedy search; more: beam search")
    max_new_tokens: int = Field(32, ge=1, description="longest message generated, in tokens")
    every: int | None = Field(None, ge=1, description="also generate and score (bleu, rouge_l, ...) every N "
                                                      "evaluations; they are always scored once at the end")


class HyperParams(Section):
    """What a sweep searches over: the method, its settings and the training recipe."""

    method: MethodName = "lora"
    lr: float = Field(1e-4, gt=0, lt=1)
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(16, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    patience: int | None = Field(None, ge=1, description="stop after this many evaluations without improvement")
    eval_every_steps: int | None = Field(None, ge=1, description="evaluate every N steps as well as each epoch")
    class_weighting: bool = Field(False, description="weight the loss by inverse class frequency")
    seed: int = 0
    lora: LoraSettings = LoraSettings()
    adapter: AdapterSettings = AdapterSettings()
    ia3: IA3Settings = IA3Settings()
    generation: GenerationSettings = GenerationSettings()


class TrialConfig(HyperParams):
    """One trial, resolved: task, data, backbone and hyper-parameters."""

    task: TaskName = Field("jitdp", description="jitdp: defect prediction; cmg: commit message generation")
    data: DataConfig = DataConfig()
    backbone: str = Field(EMBEDDED_BACKBONE, description="hub name, local folder, or 'embedded'")
    metric: str = Field("auc", description="the metric that picks the best evaluation")
    mode: Literal["max", "min"] = "max"
    threads: int = Field(1, ge=1, description="torch CPU threads; fixed so results repeat exactly")

    def flat(self) -> dict[str, Any]:
        """Dotted keys to plain values (lists as JSON), as logged to MLflow."""
        return flatten(self.model_dump(mode="json"))

    def with_overrides(self, overrides: dict[str, Any], source: str = "--set") -> "TrialConfig":
        """A copy with dotted keys set; string values are parsed as YAML scalars (`8`, `1e-4`, `[a, b]`)."""
        data = self.model_dump(mode="json")
        for key, value in overrides.items():
            set_dotted(data, key, parse_scalar(value) if isinstance(value, str) else value, source)
        return validate_trial(data, source)

    @classmethod
    def from_flat(cls, params: dict[str, str], source: str = "logged params") -> "TrialConfig":
        """Rebuild from flat string params as MLflow returns them."""
        return cls().with_overrides(params, source)


def validate_trial(data: dict[str, Any], source: str) -> TrialConfig:
    """Validate a nested dict into a TrialConfig, turning pydantic errors into one SpecError."""
    try:
        return TrialConfig.model_validate(data)
    except ValidationError as error:
        raise spec_error_from(error, source) from None


def spec_error_from(error: ValidationError, source: str, prefix: str = "") -> SpecError:
    """The first pydantic error as a SpecError naming the dotted field."""
    first = error.errors()[0]
    field = prefix + ".".join(str(part) for part in first["loc"])
    problem = first["msg"]
    fix = ""
    if first["type"] == "extra_forbidden":
        problem = "unknown key"
        fix = suggest_key(field, error.title)
    elif "input" in first and first["type"] != "missing":
        problem = f"{problem}, got {first['input']!r}"
    return SpecError(source, field, problem, fix)


def suggest_key(field: str, model_name: str) -> str:
    """'did you mean ...' for an unknown key, from the known keys of its section."""
    import difflib

    known = known_keys(TrialConfig) | {key for key in known_keys(TrialConfig, flat=False)}
    leaf = field.split(".")[-1]
    matches = difflib.get_close_matches(leaf, sorted({k.split(".")[-1] for k in known}), n=1)
    return f"did you mean '{matches[0]}'?" if matches else "remove it or check the spelling"


def known_keys(model: type[BaseModel], prefix: str = "", flat: bool = True) -> set[str]:
    """Every dotted key a model accepts."""
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys |= known_keys(annotation, f"{prefix}{name}.", flat)
            if not flat:
                keys.add(prefix + name)
        else:
            keys.add(prefix + name)
    return keys


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'lora': {'rank': 8}} -> {'lora.rank': 8}; lists become JSON text."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        elif isinstance(value, list):
            flat[prefix + key] = json.dumps(value)
        else:
            flat[prefix + key] = value
    return flat


def set_dotted(data: dict[str, Any], key: str, value: Any, source: str) -> None:
    """Set `a.b.c` in a nested dict, refusing keys that do not exist."""
    parts = key.split(".")
    node = data
    for depth, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            raise SpecError(source, key, "unknown key", suggest_key(key, ""))
        if depth == len(parts) - 1:
            node[part] = value
        else:
            node = node[part]


def parse_scalar(text: str) -> Any:
    """'8' -> 8, '1e-4' -> 0.0001, 'true' -> True, '[a, b]' -> ['a', 'b'], 'None'/'null' -> None."""
    import yaml

    if text in ("None", "null", "~"):
        return None
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads '1e-4' as a string
        except ValueError:
            return value
    return value
