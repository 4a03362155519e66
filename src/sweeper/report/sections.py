"""The sections of a sweep's report: overview, totals, the best trial per group, metric vs cost, Pareto sets,
learning curves, hyper-parameter importances and every trial."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import optuna

from sweeper.methods import METHODS
from sweeper.report import figures
from sweeper.report.analysis import FRONT_COSTS, backbone_params, best_per, pareto_front, sweep_totals
from sweeper.report.analysis import best_per_fraction
from sweeper.report.document import Block, Document, Image, Section, Table
from sweeper.report.importance import load_study, param_importances
from sweeper.spec import parse_objectives
from sweeper.tasks import task_class
from sweeper.tracking.schema import COSTS, Tag
from sweeper.tracking.sweeps import SweepDetails, TrialRun, searched_params



def build_document(details: SweepDetails, out: Path) -> Document:
    """Every section of the report; figures are written to `out` as they are made."""
    record = details.record
    study, why = load_study(details.tags.get(Tag.OPTUNA_STORAGE), record.sweep_id)
    multi = (study is not None and len(study.directions) > 1) or bool(details.tags.get(Tag.OBJECTIVES))
    return Document(f"Sweep report: {record.sweep_id}", [
        overview(details),
        totals_section(details),
        best_section("Best trial per method", "method", details, lambda t: t.method),
        *setting_sections(details),
        *fraction_sections(details, out),
        pareto_section(details, out, study),
        *([optuna_pareto_section(details, study, why)] if multi else []),
        curves_section(details, out),
        importance_section(details, out, study, why),
        trials_section(details),
    ])


def setting_sections(details: SweepDetails) -> list[Section]:
    """"Best <method> trial per <setting>" for each setting a method declares worth showing, for the methods
    that have completed trials."""
    sections = []
    completed = {trial.method for trial in details.completed()}
    for method in (METHODS[name] for name in METHODS if name in completed):
        for setting in method.shown:
            key = f"{method.name}.{setting}"
            sections.append(best_section(f"Best {method.name} trial per {setting}", setting, details,
                                         lambda t, m=method.name, k=key: t.params.get(k) if t.method == m else None))
    return sections


def fraction_sections(details: SweepDetails, out: Path) -> list[Section]:
    """"Metric against the training fraction" for a low-resource sweep (trials on more than one
    `data.train_fraction`): the best trial per (method, fraction) as a table and a figure; none otherwise."""
    rows = best_per_fraction(details)
    if not rows:
        return []
    metric = details.record.metric
    task = task_class(details.spec.task if details.spec is not None else "jitdp")
    shown = [metric, *(name for name in task.shown if name != metric)]
    table = Table(["method", "train fraction", "training commits", "trials", "best trial", "run",
                   *(f"best {name}" for name in shown)],
                  [[row.method, f"{row.fraction:g}", count_text(row.best.metrics.get("train_samples")), str(row.trials),
                    row.best.name, f"`{row.best.run_id}`", *(number(row.best.value(name)) for name in shown)]
                   for row in rows])
    note = ("Each fraction trains on a seeded, stratified share of the same training split (a smaller share is a "
            "subset of a larger one); validation and test commits are the same at every fraction, so the rows compare.")
    blocks: list[Block] = [note, table]
    path = figures.fraction_figure(details, rows, out / "fraction.png")
    if path is not None:
        blocks.append(Image(path, f"best {metric} per method against the share of the training split; faint dots are "
                                  "the other completed trials"))
    return [Section(f"{metric} against the training fraction", blocks)]


def overview(details: SweepDetails) -> Section:
    record, spec = details.record, details.spec
    lines = [f"Experiment `{details.experiment}`, parent run `{record.run_id}`; ranked by **{record.metric}** "
             f"({'higher' if record.mode == 'max' else 'lower'} is better)."]
    if spec is not None:
        lines.append(f"Spec: {spec.sweep.trials} trials, searcher `{spec.sweep.searcher}`, pruner "
                     f"`{spec.sweep.pruner.kind}`, backbone `{spec.backbone}`, data `{spec.data.path}` "
                     f"(sample {spec.data.sample or 'all'}), {spec.sweep.resources.cpu:g} CPU / "
                     f"{spec.sweep.resources.gpu:g} GPU per trial.")
    objectives = parse_objectives(details.tags.get(Tag.OBJECTIVES))
    if objectives:
        lines.append("Multi-objective study: " + ", ".join(
            f"**{metric}** ({'higher' if mode == 'max' else 'lower'} is better)" for metric, mode in objectives)
            + "; no pruning. See the Pareto set (Optuna) below.")
    best = details.tags.get(Tag.BEST_RUN)
    if best:
        gone = " (no longer in MLflow)" if all(trial.run_id != best for trial in details.trials) else ""
        lines.append(f"Best run: `{best}`{gone}" + (f" (the Pareto trial with the best {record.metric})" if objectives
                                                    else "") + ".")
    missing = details.missing()
    if missing:
        lines.append(f"**Partial report**: {missing_text(details)}; everything below covers the "
                     f"{len(details.trials)} trial runs found.")
    return Section("Overview", lines)


def missing_text(details: SweepDetails) -> str:
    """`2 of 7 trials have no run in MLflow (deleted?): Optuna trials 1, 4`."""
    missing = details.missing()
    total = len(missing) + len([trial for trial in details.trials if trial.number >= 0])
    return (f"{len(missing)} of {total} trials have no run in MLflow (deleted?): Optuna trial"
            f"{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))}")


def totals_section(details: SweepDetails) -> Section:
    totals = sweep_totals(details)
    rows = [[state, str(count)] for state, count in totals.counts.items()]
    rows.append(["compute spent", hours_text(totals.compute)])
    rows.append(["compute saved by pruning (estimate)",
                 f"{hours_text(totals.saved)} ({totals.epochs_saved:g} epochs not run)"])
    note = ("Compute is training and evaluation time times the devices a trial had (CPUs, or its GPU share). "
            "Pruning saved the epochs pruned trials did not run, times the mean seconds per epoch of the "
            "trials of the same method.")
    return Section("Sweep totals", [Table(["trials / compute", "value"], rows), note])


def best_section(title: str, group: str, details: SweepDetails, key: Callable[[TrialRun], str | None]) -> Section:
    """One row per group: the best completed trial's metrics and costs."""
    metric = details.record.metric
    task = task_class(details.spec.task if details.spec is not None else "jitdp")
    shown = [metric, *(name for name in task.shown if name != metric)]
    backbone = backbone_params(details)
    headers = [group, "trial", "run", *(f"best {name}" for name in shown), "trainable params", "% of backbone",
               "peak memory", "train time", "compute", "artifacts"]
    rows = []
    for group_value, trial in best_per(details, key):
        trainable = trial.metrics.get("trainable_params")
        share = f"{100 * trainable / backbone:.2f}%" if trainable is not None and backbone else "-"
        hours, unit = trial.compute_hours
        rows.append([group_value, trial.name, f"`{trial.run_id}`",
                     *(number(trial.value(name)) for name in shown),
                     count_text(trainable), share, megabytes(trial.metrics.get("peak_memory_mb")),
                     seconds_text(trial.metrics.get("train_seconds")), f"{hours:.4f} {unit}",
                     size_text(trial.artifact_bytes)])
    blocks: list[Block] = [Table(headers, rows)] if rows else ["No completed trial."]
    if rows and backbone:
        blocks.append(f"Backbone: {count_text(backbone)} parameters. Artifacts: the size of everything the run "
                      "logged (trained weights, config, metrics, predictions).")
    return Section(title, blocks)


def pareto_section(details: SweepDetails, out: Path, study: optuna.Study | None = None) -> Section:
    metric, mode = details.record.metric, details.record.mode
    objectives = study_objectives(study, details)
    ringed = [trial for _, trial in optuna_pareto(details, study) if trial is not None] if objectives else None
    path = figures.pareto_figure(details, out / "pareto.png", ringed, objectives[-1][0] if objectives else None)
    if path is None:
        return Section("Metric vs cost", ["No completed trial."])
    blocks: list[Block] = [Image(path, f"best {metric} against trainable parameters and train time; ringed trials are the "
                                "Pareto front (no other trial is both cheaper and better)")]
    for cost in FRONT_COSTS:
        label = COSTS[cost]
        front = pareto_front(details.completed(), metric, mode, cost)
        blocks.append(f"Pareto front on {label}:")
        blocks.append(Table(["trial", "method", label, f"best {metric}"],
                            [[t.name, t.method, cost_text(cost, t.metrics[cost]), number(t.value(metric))] for t in front]))
    return Section("Metric vs cost", blocks)


def study_objectives(study: optuna.Study | None, details: SweepDetails) -> list[tuple[str, str]]:
    """(metric, mode) per objective of a multi-objective sweep: the study's metric names, else the parent run's tag."""
    if study is not None and len(study.directions) > 1 and study.metric_names:
        return [(name, "max" if way == optuna.study.StudyDirection.MAXIMIZE else "min")
                for name, way in zip(study.metric_names, study.directions)]
    return parse_objectives(details.tags.get(Tag.OBJECTIVES))


def optuna_pareto(details: SweepDetails, study: optuna.Study | None) -> list[tuple[optuna.trial.FrozenTrial, TrialRun | None]]:
    """The study's Pareto set (`study.best_trials`) with each trial's MLflow run, cheapest first; empty when the
    study is missing or single-objective."""
    if study is None or len(study.directions) < 2:
        return []
    runs = {trial.number: trial for trial in details.trials}
    return [(trial, runs.get(trial.number)) for trial in sorted(study.best_trials, key=lambda t: (t.values[-1], t.number))]


def optuna_pareto_section(details: SweepDetails, study: optuna.Study | None, why: str) -> Section:
    """The Pareto set the multi-objective Optuna study found, with both objective values as the study has them."""
    objectives = study_objectives(study, details)
    if study is None:
        return Section("Pareto set (Optuna)", [f"Pareto set not shown: {why}."])
    pareto = optuna_pareto(details, study)
    headers = ["trial", "method", "run", *(f"{metric} ({mode})" for metric, mode in objectives)]
    rows = [[f"#{trial.number}", run.method if run else "?", f"`{run.run_id}`" if run else "-",
             *(cost_text(metric, value) if metric in COSTS else number(value)
               for (metric, _), value in zip(objectives, trial.values))] for trial, run in pareto]
    note = (f"The trials of the multi-objective study (`study.best_trials`) that no other completed trial beats on "
            f"both {' and '.join(metric for metric, _ in objectives)}; ringed in red in the metric-vs-cost figure.")
    return Section("Pareto set (Optuna)", [note, Table(headers, rows)] if rows else [note, "No completed trial."])


def curves_section(details: SweepDetails, out: Path) -> Section:
    path = figures.curves_figure(details, out / "curves.png")
    if path is None:
        return Section("Learning curves", ["No trial reported an evaluation."])
    return Section("Learning curves", [Image(path, f"validation {details.record.metric} per evaluation, per method; "
                                                   "pruned trials are dashed and end in an x where they were cut")])


def importance_section(details: SweepDetails, out: Path, study: optuna.Study | None, why: str) -> Section:
    blocks: list[Block] = []
    if study is None:
        blocks.append(f"Importances not computed: {why}.")
    else:
        importances = param_importances(study)
        keys = sorted({key for group in importances.groups.values() for key in group})
        if importances.groups:
            blocks.append(Table(["parameter", *(name for name in importances.groups)],
                                [[key, *(number(group.get(key), 3) for group in importances.groups.values())]
                                 for key in keys]))
            path = figures.importance_figure(importances.groups, out / "importance.png")
            if path is not None:
                blocks.append(Image(path, "fANOVA importances over all completed trials (parameters every trial "
                                          "has) and per method (its conditional parameters too)"))
        blocks.extend(importances.notes)
    path = figures.parallel_figure(details, out / "parallel.png")
    if path is not None:
        blocks.append(Image(path, "parallel coordinates: each line a completed trial, coloured by its best "
                                  f"{details.record.metric}; n/a marks a parameter the trial's method does not have"))
    return Section("Hyper-parameters", blocks or ["No completed trial."])


def trials_section(details: SweepDetails) -> Section:
    metric = details.record.metric
    rows = []
    for trial in details.trials:
        last = trial.curve[-1][1] if trial.curve else None
        params = " ".join(f"{key}={short(value)}" for key, value in searched_params(details, trial).items()
                          if key != "method")
        hours, unit = trial.compute_hours
        rows.append([str(trial.number), trial.state, trial.method, params, number(trial.value(metric)), number(last),
                     f"{trial.epochs_done:g}", f"{hours:.4f} {unit}"])
    headers = ["#", "state", "method", "params", f"best {metric}", f"last {metric}", "epochs", "compute"]
    return Section("All trials", [Table(headers, rows)])


def number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def cost_text(cost: str, value: float) -> str:
    if cost == "peak_memory_mb":
        return megabytes(value)
    return count_text(value) if cost == "trainable_params" else seconds_text(value)


def short(text: str) -> str:
    try:
        return f"{float(text):.3g}"
    except ValueError:
        return text


def count_text(value: float | None) -> str:
    return "-" if value is None else f"{int(value):,}"


def megabytes(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} MB"


def seconds_text(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def size_text(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return f"{size} B"


def hours_text(hours: dict[str, float]) -> str:
    return ", ".join(f"{value:.4f} {unit}" for unit, value in sorted(hours.items())) or "0"
