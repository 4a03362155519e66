"""The sweep spec: a YAML file read into typed, validated objects.

Every error names the file, the line, the field and the fix:

    smoke.yaml:12: field 'sweep.pruner.kind': Input should be 'median', ... (got 'medain')

A spec holds the data and backbone, `defaults` for every trial, the `search` space over dotted
trial keys (see `space.py`), and how to run the sweep (`sweep`) and where to record it (`tracking`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sweeper.config import (EMBEDDED_BACKBONE, DataConfig, HyperParams, ConfigSection, StopConfig, TrialConfig,
                            check_features, check_folds, known_keys, parse_scalar, spec_error, validate_trial)
from sweeper.direction import Direction, Mode, Objectives
from sweeper.errors import SpecError, did_you_mean
from sweeper.tracking.schema import COST_OBJECTIVES


class Distribution(BaseModel):
    """One searched parameter: exactly one of choice / int / float / loguniform, optionally conditional.

    `when: {method: lora}` (or `{method: [lora, ia3]}`) makes it exist only for those values.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    choice: list[Any] | None = Field(None, description="one of these values")
    int_range: tuple[int, int] | None = Field(None, alias="int", description="an integer in [low, high]")
    float_range: tuple[float, float] | None = Field(None, alias="float", description="a float in [low, high]")
    loguniform: tuple[float, float] | None = Field(None, description="a float in [low, high], on a log scale")
    step: float | None = Field(None, gt=0, description="int/float: the grid's step")
    log: bool = Field(False, description="int/float: sample on a log scale")
    when: dict[str, Any] = Field(default_factory=dict, description="only for trials whose keys have these "
                                                                   "values, e.g. {method: lora}")

    @model_validator(mode="after")
    def one_kind(self) -> "Distribution":
        kinds = [name for name in ("choice", "int_range", "float_range", "loguniform") if getattr(self, name) is not None]
        if len(kinds) != 1:
            raise ValueError("give exactly one of choice, int, float, loguniform")
        low_high = self.int_range or self.float_range or self.loguniform
        if low_high is not None and not low_high[0] < low_high[1]:
            raise ValueError(f"range [{low_high[0]}, {low_high[1]}] is empty or inverted: write [low, high] with low < high")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError("loguniform needs a positive low end")
        if self.choice is not None and not self.choice:
            raise ValueError("choice needs at least one value")
        return self

    def applies(self, current: dict[str, Any]) -> bool:
        """Whether every `when` condition holds for the values chosen so far."""
        for key, expected in self.when.items():
            allowed = expected if isinstance(expected, list) else [expected]
            if current.get(key) not in allowed:
                return False
        return True


class PrunerConfig(ConfigSection):
    """An Optuna pruner and its settings; steps are evaluations (epochs, unless eval_every_steps)."""

    kind: Literal["median", "percentile", "successive_halving", "hyperband", "none"] = Field(
        "median", description="Optuna's pruner; none for multi-objective sweeps")
    startup_trials: int = Field(3, ge=0, description="median/percentile: trials to complete before pruning")
    warmup_steps: int = Field(0, ge=0, description="median/percentile: evaluations before a trial can be pruned")
    percentile: float = Field(50.0, gt=0, lt=100, description="percentile: prune trials below this percentile")
    min_resource: int = Field(1, ge=1, description="successive_halving/hyperband: evaluations before the first rung")
    reduction_factor: int = Field(3, ge=2, description="successive_halving/hyperband: 1/N of the trials go on "
                                                       "at each rung")


class Objective(ConfigSection):
    """One objective of a multi-objective sweep: a metric of the trial's final result and its direction.

    `mode` defaults to the spec's `mode` for the first objective (the spec's metric) and to `min` for the cost.
    """

    metric: str = Field(description="the spec's metric, or a cost: trainable_params, train_seconds, ...")
    mode: Mode | None = Field(None, description="default: the spec's mode, then min")


class Resources(ConfigSection):
    """What each trial gets from Ray; `gpu: 0.5` lets two trials share a GPU."""

    cpu: float = Field(1, gt=0, description="CPUs per trial; also its torch threads")
    gpu: float = Field(0, ge=0, description="GPUs per trial; 0.5 puts two trials on one GPU")


class SweepConfig(ConfigSection):
    """How many trials, how they are chosen and pruned, and how many run at once."""

    trials: int = Field(12, ge=1, description="trials the search runs (repeats and baselines are not trials)")
    time_budget_s: float | None = Field(None, gt=0, description="stop starting trials after this many seconds")
    searcher: Literal["tpe", "random", "grid"] = Field("tpe", description="Optuna's sampler")
    pruner: PrunerConfig = PrunerConfig()
    max_concurrent: int = Field(2, ge=1, description="trials running at once")
    resources: Resources = Resources()
    seed: int = Field(0, description="the sampler's seed")
    repeats: int = Field(0, ge=0, description="after the search, re-train the best configuration of each method with "
                                              "this many more seeds (the trial's seed + 1, + 2, ...); not trials")
    objectives: list[Objective] = Field(default_factory=list,
                                        description="two objectives, the spec's metric then a cost: a multi-objective "
                                                    "Optuna study (no pruning); empty: optimise the metric alone")
    register_best: bool | str = Field(False, description="at the end, register the best trial in the MLflow Model "
                                                         "Registry: true (named after the spec) or a model name")
    stop: StopConfig = Field(default_factory=StopConfig, description="end the sweep once it is decided (`when: "
                             "decided`), or only log when it could have (`when: never`, the default)")


class TrackingConfig(ConfigSection):
    """Where runs, the Optuna study and Ray's results go (defaults: the working directory)."""

    uri: str | None = Field(None, description="MLflow tracking URI; default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")
    study: str | None = Field(None, description="Optuna storage URL; default a SQLite file per sweep")
    storage: str = Field("sweeper-results", description="Ray Tune storage: a folder or s3://bucket/path")


class Spec(ConfigSection):
    """A sweep: what to train on, what to search, how to run it, where to record it."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    task: str = Field("jitdp", description="a task of `sweeper.tasks.TASKS`: jitdp (defect prediction), cmg "
                                           "(commit message generation), or one registered")
    data: DataConfig = DataConfig()
    backbone: str = Field(EMBEDDED_BACKBONE, description="hub name, local folder, or 'embedded' (a toy built "
                                                         "offline)")
    metric: str = Field("auc", description="the metric that ranks trials and picks each trial's best evaluation")
    mode: Mode = Field("max", description="max: higher is better; min: lower (eval_loss)")
    defaults: HyperParams = Field(HyperParams(), description="trial keys set for every trial")
    search: dict[str, Distribution] = Field(default_factory=dict, description="the searched trial keys, by "
                                                                          "dotted name")
    baselines: list[str] | None = Field(None, description="baselines fitted on the trials' training split and scored "
                                                          "beside them; default: lapredict and expert_lr for jitdp; "
                                                          "[] for none")
    sweep: SweepConfig = SweepConfig()
    tracking: TrackingConfig = TrackingConfig()

    def base_trial(self) -> TrialConfig:
        """The trial config before any searched value: defaults, data, backbone, metric."""
        threads = max(1, int(self.sweep.resources.cpu))
        return TrialConfig(**self.defaults.model_dump(), task=self.task, data=self.data, backbone=self.backbone,
                           metric=self.metric, mode=self.mode, threads=threads)

    def trial(self, values: dict[str, Any], source: str = "search") -> TrialConfig:
        """A trial config with searched (or overridden) dotted values set."""
        return self.base_trial().with_overrides(values, source)

    def baseline_names(self) -> list[str]:
        """The baselines to fit beside the trials: the spec's list, else every JIT-DP baseline (none for cmg)."""
        if self.baselines is not None:
            return list(self.baselines)
        from sweeper.baselines import BASELINES

        return list(BASELINES) if self.task == "jitdp" else []

    def objectives(self) -> Objectives:
        """(metric, mode) of each objective with its default mode filled in; empty for a single-objective sweep."""
        return [(objective.metric, objective.mode or (self.mode if index == 0 else "min"))
                for index, objective in enumerate(self.sweep.objectives)]


def format_objectives(objectives: Objectives) -> str:
    """[('auc', 'max'), ('trainable_params', 'min')] -> 'auc:max,trainable_params:min' (the parent run's tag)."""
    return ",".join(f"{metric}:{mode}" for metric, mode in objectives)


def parse_objectives(text: str | None) -> Objectives:
    """The inverse of `format_objectives`; empty for None or ''."""
    pairs = [item.partition(":") for item in (text or "").split(",") if item]
    return [(metric, Direction(mode or "max").value) for metric, _, mode in pairs]


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec file; every problem is a SpecError naming file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(str(path), "-", "spec file not found", "give the path to a YAML spec, e.g. search_spaces/smoke.yaml")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise SpecError(where, "-", f"not valid YAML: {problem}", "check indentation and quoting") from None
    if not isinstance(data, dict):
        raise SpecError(str(path), "-", "expected a mapping of keys (name, data, search, sweep, ...)")
    return parse_spec(data, str(path), text)


def parse_spec(data: dict[str, Any], source: str, text: str = "") -> Spec:
    """Validate a spec mapping, then check the search keys and the metric against the trial config."""
    try:
        spec = Spec.model_validate(data)
    except ValidationError as error:
        raise spec_error(error, source, Spec, lambda path: at_line(source, text, path)) from None
    check_task(spec, source, text)
    check_features(spec.task, spec.defaults.features, at_line(source, text, ["defaults", "features"]),
                   "defaults.features")
    check_folds(spec.task, spec.data.split.folds, at_line(source, text, ["data", "split", "folds"]))
    check_search(spec, source, text)
    check_baselines(spec, source, text)
    check_metric(spec, source, text)
    check_objectives(spec, source, text)
    check_stop(spec, source, text)
    base = spec.base_trial()
    validate_trial(base.model_dump(mode="json"), source)
    return spec


def check_task(spec: Spec, source: str, text: str) -> None:
    """The task must be one of the registry's."""
    from sweeper.tasks import TASKS

    if spec.task not in TASKS:
        raise SpecError(at_line(source, text, ["task"]), "task", f"unknown task '{spec.task}'",
                        did_you_mean(spec.task, list(TASKS)) or f"use one of {', '.join(TASKS)}")


def check_search(spec: Spec, source: str, text: str) -> None:
    """Each searched key and `when` key must be a trial key; choices must validate."""
    keys = known_keys(TrialConfig)
    for key, distribution in spec.search.items():
        for name in [key, *distribution.when]:
            if name not in keys:
                fix = did_you_mean(name, keys) or "use a dotted trial key such as lr or lora.rank"
                raise SpecError(at_line(source, text, ["search", key]), f"search.{key}", f"unknown trial key '{name}'", fix)
        for value in distribution.choice or []:
            spec.base_trial().with_overrides({key: value}, at_line(source, text, ["search", key]))


def check_baselines(spec: Spec, source: str, text: str) -> None:
    """Each baseline must exist; baselines are defect predictors (JIT-DP only)."""
    if not spec.baselines:
        return
    from sweeper.baselines import BASELINES

    for index, name in enumerate(spec.baselines or []):
        where = at_line(source, text, ["baselines", str(index)])
        if spec.task != "jitdp":
            raise SpecError(where, "baselines", f"baselines are defect predictors: a {spec.task} spec has none",
                            "remove baselines, or set baselines: []")
        if name not in BASELINES:
            raise SpecError(where, f"baselines.{index}", f"unknown baseline '{name}'",
                            did_you_mean(name, BASELINES) or f"use one of {', '.join(BASELINES)}")


def check_metric(spec: Spec, source: str, text: str) -> None:
    """The metric must be one each evaluation of the task reports, in its natural direction."""
    from sweeper.tasks import task_class

    task = task_class(spec.task)
    where = at_line(source, text, ["metric"])
    known = task.metrics
    if spec.metric in task.generated_metrics:
        if spec.defaults.generation.every != 1 or any(key.startswith("generation.") for key in spec.search):
            raise SpecError(where, "metric", f"'{spec.metric}' is scored only at the end of a trial, so it cannot "
                            "pick the best evaluation or prune", "use metric: eval_loss with mode: min, or set "
                            "defaults.generation.every: 1 (generates messages at every evaluation: slower)")
    elif spec.metric not in known:
        generated = task.generated_metrics
        scored = f", or {', '.join(generated)} with generation.every: 1" if generated else ""
        raise SpecError(where, "metric", f"'{spec.metric}' is not a {spec.task} metric",
                        f"use one of {', '.join(known)}{scored}")
    if spec.metric in task.lower_is_better and spec.mode != "min":
        raise SpecError(at_line(source, text, ["mode"]), "mode", f"{spec.metric} is lower-is-better, got mode: {spec.mode}",
                        "set mode: min")


def check_objectives(spec: Spec, source: str, text: str) -> None:
    """Two objectives: the spec's metric (same mode) then a cost; no Optuna pruner (pruning is single-objective).

    A multi-objective spec that does not name a pruner gets `none`.
    """
    sweep = spec.sweep
    if not sweep.objectives:
        return
    where = at_line(source, text, ["sweep", "objectives"])
    example = "e.g. [{metric: auc, mode: max}, {metric: trainable_params, mode: min}]"
    if len(sweep.objectives) != 2:
        raise SpecError(where, "sweep.objectives", f"give exactly two objectives, got {len(sweep.objectives)}",
                        f"the spec's metric then a cost, {example}")
    first, cost = sweep.objectives
    if first.metric != spec.metric:
        raise SpecError(at_line(source, text, ["sweep", "objectives", "0", "metric"]), "sweep.objectives.0.metric",
                        f"the first objective must be the spec's metric '{spec.metric}', got '{first.metric}'",
                        f"list {{metric: {spec.metric}}} first, or set metric: {first.metric} at the top level")
    if first.mode is not None and first.mode != spec.mode:
        raise SpecError(at_line(source, text, ["sweep", "objectives", "0", "mode"]), "sweep.objectives.0.mode",
                        f"'{first.mode}' disagrees with the spec's mode '{spec.mode}' for '{spec.metric}'",
                        f"write mode: {spec.mode}, or leave it out")
    if cost.metric not in COST_OBJECTIVES:
        raise SpecError(at_line(source, text, ["sweep", "objectives", "1", "metric"]), "sweep.objectives.1.metric",
                        f"the second objective must be a cost, got '{cost.metric}'",
                        did_you_mean(cost.metric, COST_OBJECTIVES) or f"use one of {', '.join(COST_OBJECTIVES)}")
    if "pruner" not in sweep.model_fields_set:
        sweep.pruner = PrunerConfig(kind="none")
    elif sweep.pruner.kind != "none":
        raise SpecError(at_line(source, text, ["sweep", "pruner"]), "sweep.pruner",
                        f"Optuna cannot prune a multi-objective study (pruner '{sweep.pruner.kind}' with "
                        "sweep.objectives)", "set pruner: {kind: none} for multi-objective sweeps")


def check_stop(spec: Spec, source: str, text: str) -> None:
    """`sweep.stop: {when: decided}` needs a budget it can stop inside, one metric to bound, and repeats are not
    trials (they come after the search, whatever stopped it)."""
    stop = spec.sweep.stop
    if stop.when != "decided":
        return
    if stop.min_trials > spec.sweep.trials:
        raise SpecError(at_line(source, text, ["sweep", "stop", "min_trials"]), "sweep.stop.min_trials",
                        f"min_trials ({stop.min_trials}) is larger than sweep.trials ({spec.sweep.trials}): the sweep "
                        "would end before it could stop", f"set min_trials: {spec.sweep.trials} or less, or raise "
                        "sweep.trials")
    if stop.patience >= spec.sweep.trials:
        raise SpecError(at_line(source, text, ["sweep", "stop", "patience"]), "sweep.stop.patience",
                        f"patience ({stop.patience}) leaves no trial of sweep.trials ({spec.sweep.trials}) to decide "
                        "on", f"set patience below {spec.sweep.trials}")
    if spec.sweep.objectives:
        raise SpecError(at_line(source, text, ["sweep", "stop", "when"]), "sweep.stop.when",
                        "a multi-objective sweep has a Pareto set, not one best value to bound",
                        "set when: never, or remove sweep.objectives")


def at_line(source: str, text: str, path: list[str]) -> str:
    """`file:line` of the deepest key of `path` found in the YAML text (just `file` if none)."""
    if not text:
        return source
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return source
    line = None
    for part in path:
        if isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
            continue
        if not isinstance(node, yaml.MappingNode):
            break
        match = next(((k, v) for k, v in node.value if k.value == part), None)
        if match is None:
            break
        line = match[0].start_mark.line + 1
        node = match[1]
    return f"{source}:{line}" if line else source


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`--set key=value` pairs to a dict; a pair without '=' is a SpecError."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SpecError("--set", pair, "expected KEY=VALUE", "e.g. --set lora.rank=8")
        overrides[key.strip()] = parse_scalar(value.strip())
    return overrides
