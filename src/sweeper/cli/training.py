"""The `sweeper train` command: one trial of a spec, printed beside the spec's baselines."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sweeper.tracking.schema import CI_HIGH, CI_LOW, window_metric_name


COSTS_SHOWN = ("trainable_params", "total_params", "trainable_percent", "train_seconds", "eval_seconds",
               "samples_per_second", "peak_memory_mb", "train_flops")


def cmd_train(args: argparse.Namespace) -> int:
    from sweeper.baselines import baselines_for
    from sweeper.data.records import read_records
    from sweeper.spec import load_spec, parse_overrides
    from sweeper.tasks import task_class
    from sweeper.trial import run_trial

    spec = load_spec(args.spec)
    config = spec.trial(parse_overrides(args.overrides), "--set")
    task = task_class(config.task)
    if not args.json:
        print(f"training {config.method} on {config.data.path} with backbone {config.backbone}", file=sys.stderr)
    shown = [*task.shown, *task.lower_is_better]
    dataset = read_records(config.data.path, config.task, config.data.skip_bad)  # once, for the trial and baselines
    result = run_trial(config, args.out, report=None if args.json else lambda e: print_evaluation(e, shown),
                       dataset=dataset)
    baselines = baselines_for(config, spec.baseline_names(), dataset)  # on the trial's own split
    if args.json:
        figures = {b.name: baseline_figures(b) for b in baselines}
        print(json.dumps({**result.metrics, **result.costs, "baselines": figures}))
        return 0
    metrics = [*task.metrics, *task.generated_metrics]
    folds = config.data.split.folds
    title = f"metrics ({f'{folds} rolling windows pooled' if folds > 1 else 'best evaluation'})"
    print_pairs(title, {key: result.metrics[key] for key in metrics if key in result.metrics})
    print_pairs("costs", {key: result.costs[key] for key in COSTS_SHOWN if key in result.costs})
    if baselines:
        print_beside(f"{config.method} (trial)", result.metrics, result.costs["train_seconds"], baselines, task.shown)
    if args.out:
        print(f"artifacts: {args.out}")
    return 0


def baseline_figures(baseline: Any) -> dict[str, Any]:
    """A baseline for `train --json`: validation metrics with intervals, test metrics as `test_*`, its cost."""
    if baseline.skipped:
        return {"skipped": baseline.skipped, "description": baseline.description}
    test = {f"test_{name}": value for name, value in baseline.metrics.get("test", {}).items()}
    return {**baseline.metrics["valid"], **test, "fit_seconds": baseline.fit_seconds,
            "parameters": baseline.parameters, "description": baseline.description}


def print_beside(trial: str, metrics: dict[str, float], seconds: float, baselines: list[Any],
                 shown: tuple[str, ...]) -> None:
    """The trial and the baselines on its validation split: each shown metric with its 95 % interval, and seconds
    (training for the trial, fitting for a baseline)."""
    def cell(values: dict[str, float], name: str) -> str:
        low, high = values.get(f"{name}{CI_LOW}"), values.get(f"{name}{CI_HIGH}")
        interval = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
        return f"{values[name]:.3f}{interval}"

    print("the trial beside the baselines (validation split; 95 % bootstrap intervals)")
    print(f"  {'model':18}" + "".join(f"{name:24}" for name in shown) + "seconds")
    print(f"  {trial:18}" + "".join(f"{cell(metrics, name):24}" for name in shown) + f"{seconds:.1f}")
    for baseline in baselines:
        if baseline.skipped:
            print(f"  {baseline.name:18}skipped: {baseline.skipped}")
            continue
        valid = baseline.metrics["valid"]
        print(f"  {baseline.name:18}" + "".join(f"{cell(valid, name):24}" for name in shown)
              + f"{baseline.fit_seconds:.3f}")


def print_evaluation(evaluation: Any, shown: list[str]) -> None:
    """One line per evaluation; a rolling trial's (one per window) gives the windows so far pooled."""
    values = " ".join(f"{key}={evaluation.metrics[key]:.4f}" for key in shown if key in evaluation.metrics)
    where = (f"window {evaluation.index} (pooled so far)" if window_metric_name("commits") in evaluation.metrics
             else f"epoch {evaluation.epoch:g}")
    print(f"  {where}: {values}", file=sys.stderr, flush=True)


def print_pairs(title: str, values: dict[str, float]) -> None:
    print(title)
    for key, value in values.items():
        print(f"  {key:22} {value:.6g}")
