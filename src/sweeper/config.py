"""The resolved configuration of one trial: everything needed to train it again, nothing more.

A sweep samples values into a `TrialConfig`; MLflow logs it flattened (`lora.rank`, `lr`, ...);
`reproduce` reads the flat params back with `TrialConfig.from_flat`.

    >>> config = TrialConfig().with_overrides({"method": "lora", "lora.rank": "8", "lr": "1e-4"})
    >>> config.lora.rank, config.flat()["lora.rank"]
    (8, 8)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo, create_model,
                      field_validator, model_validator)

from sweeper.direction import Mode
from sweeper.errors import SpecError, did_you_mean
from sweeper.methods import METHODS

EMBEDDED_BACKBONE = "embedded"
# YAML 1.1 reads a bare `off` as false (and `on` as true): both spellings mean the same here.
CacheFrozen = Annotated[Literal["auto", "off"], BeforeValidator(
    lambda value: ("auto" if value else "off") if isinstance(value, bool) else value)]


class ConfigSection(BaseModel):
    """A config section: unknown keys are errors, values are checked on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


Share = Annotated[float | list[str], BeforeValidator(lambda value: [value] if isinstance(value, str) else value)]


class SplitConfig(ConfigSection):
    """How records are split: `random` (stratified on label, seeded), `time` (older commits train) or `project`
    (whole projects train, validate and test: cross-project transfer).

    `valid` and `test` are shares of the records, or for `project` a list of projects or a share of the projects
    (drawn, seeded); `train` names the training projects (default: every project not validating or testing).
    """

    kind: Literal["random", "time", "project"] = Field("time", description="random: stratified on the label; "
                                                       "time: older commits train; project: whole projects")
    valid: Share = Field(0.2, description="share of records (project: list of projects, or share of projects) "
                                           "for validation")
    test: Share = Field(0.0, description="share of records (project: list of projects, or share of projects) "
                                          "held out for a final test")
    train: list[str] | None = Field(None, description="project: the training projects; default every project "
                                                       "that neither validates nor tests")
    folds: int = Field(1, ge=1, description="time: rolling-origin evaluation over this many successive validation "
                                            "windows (the valid share cut in `folds`), each trained on every commit "
                                            "older than it; metrics pool the windows' predictions (1: one split)")

    @field_validator("valid", "test")
    @classmethod
    def share_or_projects(cls, value: float | list[str], info: ValidationInfo) -> float | list[str]:
        if isinstance(value, list):
            if not value:
                raise ValueError("an empty list of projects: name at least one, or give a share such as 0.2")
            return value
        low_ok = value > 0 if info.field_name == "valid" else value >= 0
        if not (low_ok and value < 1):
            raise ValueError(f"a share must be {'above' if info.field_name == 'valid' else 'at least'} 0 and "
                             "below 1, or a list of projects with kind: project")
        return value

    @field_validator("train")
    @classmethod
    def some_projects(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("an empty list of projects: name at least one, or leave train out (every project left)")
        return value

    @model_validator(mode="after")
    def projects_fit_the_kind(self) -> "SplitConfig":
        named = {side: getattr(self, side) for side in ("train", "valid", "test")
                 if isinstance(getattr(self, side), list)}
        if self.folds > 1 and self.kind != "time":
            raise ValueError(f"folds ({self.folds}) needs kind: time (rolling windows follow time order); "
                             "set kind: time or leave folds out")
        if self.kind != "project":
            if named:
                raise ValueError(f"lists of projects ({', '.join(named)}) need kind: project (kind '{self.kind}' "
                                 "takes shares of the records)")
            return self
        seen: dict[str, str] = {}
        for side, projects in named.items():
            for project in projects:
                if project in seen and seen[project] != side:
                    raise ValueError(f"project '{project}' is on two sides ({seen[project]} and {side}): "
                                     "name each project once")
                seen[project] = side
        return self


class StopConfig(ConfigSection):
    """When a sweep may end before its trial budget: `never` (the default: the check still runs after each trial and
    logs its figures, so a user sees when the sweep could have stopped) or `decided` (no new trial starts once more
    trials cannot change the answer; see `sweeper.sweep.stopping`).

    Defaults, and why: `min_trials: 6` gives the regret bound's Gaussian process a few points per level of a two- or
    three-level factor before it is trusted (Optuna's own default, 20, is meant for long studies, not 12-trial
    sweeps); `patience: 3` asks that the verdict survive three more trials, enough that one lucky trial at the end
    cannot settle it, few enough that a settled sweep stops well before its budget.
    """

    when: Literal["never", "decided"] = Field("never", description="never: run every trial, logging the bound and "
                                              "the error after each; decided: stop starting trials once the "
                                              "improvement still possible is below the best trial's bootstrap "
                                              "standard error and the verdict held for `patience` trials")
    min_trials: int = Field(6, ge=2, description="decided: never stop before this many trials ended")
    patience: int = Field(3, ge=1, description="decided: the verdict must stay the same over this many ended trials")


class DataConfig(ConfigSection):
    """Where the commits come from and how they are split and encoded."""

    path: str = Field("bundled:jitdp", description="file path (relative to the folder the command runs in), s3:// URI "
                                                    "or bundled:jitdp / bundled:cmg")
    sample: int | None = Field(None, gt=0, description="keep this many records (seeded, order kept)")
    seed: int | None = Field(None, description="seed of the sample, the random split and the training fraction; "
                                               "default: the trial's seed (repeats set it, so a new training seed "
                                               "keeps the same commits)")
    train_fraction: float = Field(1.0, gt=0, le=1, description="train on this share of the training split only "
                                  "(seeded, stratified on the label; nested: a smaller share is a subset of a larger "
                                  "one); validation and test stay the same")
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

    @field_validator("path")
    @classmethod
    def absolute_path(cls, value: str) -> str:
        """A relative file path is the command's folder's: made absolute where the spec is read, since Ray's workers
        run each trial in a folder of their own."""
        if "://" in value or value.startswith("bundled:") or Path(value).expanduser().is_absolute():
            return value
        return os.path.abspath(value)

    @model_validator(mode="after")
    def rolling_trains_on_everything(self) -> "DataConfig":
        if self.split.folds > 1 and self.train_fraction < 1:
            raise ValueError(f"train_fraction ({self.train_fraction}) with split.folds ({self.split.folds}): a rolling "
                             "window trains on every older commit; leave train_fraction out or set folds: 1")
        return self

    @model_validator(mode="after")
    def pad_to_fits(self) -> "DataConfig":
        if self.pad_to is not None and self.pad_to < self.max_length:
            raise ValueError(f"pad_to ({self.pad_to}) is below max_length ({self.max_length}): "
                             f"set pad_to >= max_length, or leave it out")
        return self


class GenerationSettings(ConfigSection):
    """Commit message generation: decoding and how often the generated messages are scored."""

    num_beams: int = Field(1, ge=1, description="1: greedy search; more: beam search")
    max_new_tokens: int = Field(32, ge=1, description="longest message generated, in tokens")
    every: int | None = Field(None, ge=1, description="also generate and score (bleu, rouge_l, ...) every N "
                                                      "evaluations; they are always scored once at the end")
    decoder_layers: int = Field(6, ge=1, description="an encoder-only backbone (BERT, RoBERTa: CodeBERT, "
                                "GraphCodeBERT, UniXcoder) gets a new decoder of this many layers, which always trains")


def method_sections() -> type[ConfigSection]:
    """One section per method that has settings, named after the method (`lora.rank`, `adapter.placement`)."""
    fields: dict[str, Any] = {name: (method.settings, Field(default_factory=method.settings, description=method.summary))
                              for name, method in METHODS.items() if method.settings is not None}
    return create_model("MethodSections", __base__=ConfigSection, **fields)


class HyperParams(method_sections()):  # type: ignore[misc]
    """What a sweep searches over: the method, its settings and the training recipe."""

    method: str = Field("lora", description=f"one of {', '.join(METHODS)}")
    lr: float = Field(1e-4, gt=0, lt=1, description="AdamW's peak learning rate (linear warm-up and decay)")
    epochs: int = Field(3, ge=1, description="passes over the training split")
    batch_size: int = Field(16, ge=1, description="commits per optimiser step")
    eval_batch_size: int = Field(64, ge=1, description="commits per evaluation batch")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="share of the steps spent warming up the lr")
    weight_decay: float = Field(0.0, ge=0, description="AdamW's weight decay")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping")
    patience: int | None = Field(None, ge=1, description="stop after this many evaluations without improvement")
    eval_every_steps: int | None = Field(None, ge=1, description="evaluate every N steps as well as each epoch")
    class_weighting: bool = Field(False, description="weight the loss by inverse class frequency")
    seed: int = Field(0, description="the seed of everything (the data's sample and split too, unless data.seed)")
    features: Literal["none", "expert"] = Field("none", description="expert: JIT-Fine's head reads the commit's 14 "
                                                "expert change metrics beside its text (jitdp only)")
    generation: GenerationSettings = GenerationSettings()
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 where the device runs it fast (CUDA compute capability 8.0+, CPUs with AMX or "
                            "AVX512-BF16), fp32 elsewhere, logged as sweeper.precision; fp32; bf16: autocast to "
                            "bfloat16 (GPU or CPU); fp16: autocast to float16 with a gradient scaler (GPU only). "
                            "Evaluation and generation run under the same autocast; frozen matrix weights are held in "
                            "bf16/fp16")
    quantization: Literal["none", "8bit", "4bit"] = Field(
        "none", description="load the frozen base quantized (bitsandbytes, CUDA GPUs only): 4bit is QLoRA's NF4 with "
                            "bf16 compute, 8bit LLM.int8(); not with method: full (see sweeper.quantization)")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimiser step: each batch of batch_size is "
                                                 "split into this many (less memory, the same update)")
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass: "
                                                            "less memory, about a third more compute")
    cache_frozen: CacheFrozen = Field(
        "auto", description="auto: when every trained module sits at layer k or above, compute the frozen layers "
                            "below k once (in eval mode: no dropout) and train on their cached output; off: never")

    @field_validator("method")
    @classmethod
    def known_method(cls, value: str) -> str:
        if value not in METHODS:
            close = did_you_mean(value, METHODS)
            raise ValueError(f"unknown method, use one of {', '.join(map(repr, METHODS))}" + (f"; {close}" if close else ""))
        return value


class TrialConfig(HyperParams):
    """One trial, resolved: task, data, backbone and hyper-parameters."""

    task: str = Field("jitdp", description="a task of `sweeper.tasks.TASKS`: jitdp (defect prediction), cmg (commit "
                      "message generation), or one registered")
    data: DataConfig = DataConfig()
    backbone: str = Field(EMBEDDED_BACKBONE, description="hub name, local folder, or 'embedded'")
    metric: str = Field("auc", description="the metric that picks the best evaluation")
    mode: Mode = Field("max", description="max: higher is better; min: lower (eval_loss)")
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
        config = TrialConfig.model_validate(data)
    except ValidationError as error:
        raise spec_error(error, source, TrialConfig) from None
    check_features(config.task, config.features, source)
    check_folds(config.task, config.data.split.folds, source)
    if config.quantization != "none" and config.method == "full":
        raise SpecError(source, "quantization", f"quantization: {config.quantization} freezes the base in "
                        "bitsandbytes' format, so method: full cannot train it", "use lora (QLoRA), ia3 or adapter, "
                        "or quantization: none")
    return config


def check_folds(task: str, folds: int, source: str, field: str = "data.split.folds") -> None:
    """Rolling windows pool defect scores (AUC, F1 over every window's commits); message generation's pooled
    text metrics are not built."""
    if folds > 1 and task != "jitdp":
        raise SpecError(source, field, f"folds ({folds}) is for defect prediction (jitdp), not {task}",
                        "remove it (one time split)")


def check_features(task: str, features: str, source: str, field: str = "features") -> None:
    """Expert features are JIT-DP's change metrics: a message generation trial cannot use them."""
    if features == "expert" and task != "jitdp":
        raise SpecError(source, field, f"features: expert is for defect prediction (jitdp), not {task}",
                        "remove it or set features: none")


def spec_error(error: ValidationError, source: str, root: type[BaseModel],
               locate: Callable[[list[str]], str] | None = None) -> SpecError:
    """The first pydantic error as a SpecError naming the dotted field and the fix; `locate(path)` gives the
    `file:line` of a field where the source text is known (a spec file)."""
    first = error.errors()[0]
    path = [str(part) for part in first["loc"]]
    problem = first["msg"].removeprefix("Value error, ")
    fix = ""
    if first["type"] == "extra_forbidden":
        problem = "unknown key"
        known = list(section_at(root, path[:-1]).model_fields)
        fix = did_you_mean(path[-1], known) or f"known keys: {', '.join(known)}"
    elif first["type"] == "missing":
        fix = "add it"
    elif "input" in first and not isinstance(first["input"], dict):
        problem = f"{problem} (got {first['input']!r})"
    return SpecError(locate(path) if locate else source, ".".join(path), problem, fix)


def section_at(root: type[BaseModel], path: list[str]) -> type[BaseModel]:
    """The config section a path of field names leads to (lists of sections count as the section)."""
    section = root
    for part in path:
        field = section.model_fields.get(part)
        inner = getattr(field, "annotation", None)
        inner = next(iter(get_args(inner)), inner) if get_origin(inner) is list else inner
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            break
        section = inner
    return section


def known_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every dotted key a model accepts."""
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys |= known_keys(annotation, f"{prefix}{name}.")
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
            known = node if isinstance(node, dict) else {}
            raise SpecError(source, key, "unknown key", did_you_mean(part, known) or "remove it or check the spelling")
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
