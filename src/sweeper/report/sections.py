"""The sections of a sweep's report: the verdict, every searched factor's effect, the decision (methods and baselines
compared with intervals), the held-out test figures, overview, totals,
the best trial per group, metric vs cost, Pareto sets, learning curves, hyper-parameter importances, every trial and
every repeat."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import optuna

from sweeper.methods import METHODS
from sweeper.report.wording import DISPLAY
from sweeper.report import figures
from sweeper.report.analysis import (FRONT_COSTS, RESAMPLES, Decision, backbone_params, best_per, best_per_fraction,
                                     decide, pareto_front, repeats_of, spread, sweep_totals, value_text)
from sweeper.report.budget import trials_used, trials_used_text
from sweeper.report.document import Block, Document, Image, Section, Table
from sweeper.report.effects import Comparison
from sweeper.report.importance import load_study, param_importances
from sweeper.report.verdict import Verdict, verdict
from sweeper.spec import parse_objectives
from sweeper.tasks import task_class
from sweeper.direction import Direction
from sweeper.recorded.objectives import study_objectives
from sweeper.tracking.schema import COSTS, Role, State, Tag
from sweeper.recorded.sweeps import SweepDetails, TrialRun, ranked, searched_params


def build_document(details: SweepDetails, out: Path, decision: Decision | None = None,
                   found: Verdict | None = None) -> Document:
    """Every section of the report, the verdict first (`verdict(details)` unless given), then the factors' effects
    and the decision (`decide(details)` unless given); figures are written to `out` as they are made."""
    record = details.record
    found = found or verdict(details)
    study, why = load_study(details.tags.get(Tag.OPTUNA_STORAGE), record.sweep_id)
    multi = (study is not None and len(study.directions) > 1) or bool(details.tags.get(Tag.OBJECTIVES))
    return Document(f"Sweep report: {record.sweep_id}", [
        verdict_section(found, out),
        effects_section(details, found),
        decision_section(details, decision),
        *([heldout_section(details, found)] if heldout_runs(details, found) else []),
        overview(details),
        totals_section(details),
        best_section("Best trial per method", "method", details, lambda t: t.method,
                     ranked(details.baselines, record.metric, record.mode)),
        *setting_sections(details),
        *fraction_sections(details, out),
        pareto_section(details, out, study),
        *([optuna_pareto_section(details, study, why)] if multi else []),
        curves_section(details, out),
        importance_section(details, out, study, why),
        trials_section(details),
        *([repeats_section(details)] if details.repeats else []),
    ])


def verdict_section(found: Verdict, out: Path) -> Section:
    """The verdict in bold, its comparisons as a forest plot, and how to read both."""
    blocks: list[Block] = [f"**{found.text}**"]
    path = figures.forest_figure(found, out / "forest.png")
    if path is not None:
        blocks.append(Image(path, "each comparison the verdict rests on: the paired difference of the two runs' "
                                  "validation metric with its 95 % interval; the dashed line is no difference"))
    blocks.append(f"Resolved: the paired bootstrap 95 % interval on the same validation commits ({RESAMPLES:,} "
                  "resamples, seeded) excludes 0 and, where both sides were repeated over seeds, Welch's test agrees "
                  "(p < 0.05, same sign). Cost: configurations are ranked by estimated training FLOPs (hardware-free: "
                  "comparable across machines), then trainable parameters; by measured training seconds (comparable "
                  "within one device kind only) where a trial logged no FLOPs. This verdict ranked by "
                  f"{COSTS.get(found.cost, found.cost)}.")
    if found.resolution is not None:
        blocks.append(f"Resolution: {found.resolution.sentence}. Before its first trial the sweep logged this figure "
                      "as `resolvable_difference` (`sweeper.metrics.resolution` says how it is computed).")
    return Section("Verdict", blocks)


def effects_section(details: SweepDetails, found: Verdict) -> Section:
    """A table per searched factor (and one against the best baseline): each level's best trial, its difference
    from the best level with its interval, Welch over repeats, and both costs."""
    blocks: list[Block] = []
    if found.baselines:
        blocks.append("Each method's best trial against the best baseline:")
        blocks.append(effect_table("method", [(c.name_a, c.a, c) for c in found.baselines], found.metric,
                                   found.baselines[0].name_b))
    for factor in found.factors:
        top_name, top = factor.levels[0]
        blocks.append(f"`{factor.key}`: " + ("a clear effect." if factor.clear else "no clear effect.")
                      + f" Differences are from the best level, {top_name}.")
        rows = [(top_name, top, None), *((c.name_b, c.b, c) for c in factor.comparisons)]
        blocks.append(effect_table(factor.key, rows, found.metric, top_name, reverse=True))
    if not blocks:
        return Section("Effects of the searched factors", ["No searched factor has two levels with a completed trial."])
    blocks.append("A level's row is its best trial; the difference is A - B on the same validation commits with its "
                  "paired bootstrap 95 % interval (A: the best level; against the baseline, the method). Numeric keys "
                  "are binned: per decade on a log scale, else in tertiles of the values tried.")
    return Section("Effects of the searched factors", blocks)


def effect_table(key: str, rows: list[tuple[str, TrialRun, Comparison | None]], metric: str, against: str,
                 reverse: bool = False) -> Table:
    """One row per level: its best trial, value, difference from `against` (B - A of the comparison when `reverse`),
    Welch over seeds and both costs."""
    name = DISPLAY.get(metric, metric)
    body = []
    for level, run, comparison in rows:
        difference, seeds, resolved = "-", "-", "-"
        if comparison is not None and comparison.difference is not None:
            d = comparison.difference
            value, low, high = (-d.value, -d.high, -d.low) if reverse else (d.value, d.low, d.high)
            difference, resolved = f"{value:+.3f} [{low:+.3f}, {high:+.3f}]", "yes" if comparison.side else "no"
        if comparison is not None and comparison.repeats is not None:
            repeats = comparison.repeats
            seeds = f"{repeats.n_a} vs {repeats.n_b} seeds, p = {repeats.p_value:.2g}"
        flops = run.metrics.get("train_flops")
        body.append([level, run.name, value_text(run, metric, named=False), difference, seeds, resolved,
                     "-" if not flops else f"{flops:.2g}", seconds_text(run.metrics.get("train_seconds")),
                     count_text(run.metrics.get("trainable_params"))])
    return Table([key, "best trial", f"{name} [95 % interval]", f"difference from {against} [95 % interval]",
                  "over seeds (Welch)", "resolved", "training FLOPs", "train time", "trainable params"], body)


def heldout_runs(details: SweepDetails, found: Verdict) -> list[TrialRun]:
    """The chosen configuration and the baselines, those that logged a test value of the verdict's metric."""
    chosen = [found.chosen.a] if found.chosen else details.completed()[:1]
    return [run for run in [*chosen, *details.baselines] if run.value(f"test_{found.metric}") is not None]


def heldout_section(details: SweepDetails, found: Verdict) -> Section:
    """Test metrics of the chosen configuration and the baselines, shown once the choice is made."""
    name = DISPLAY.get(found.metric, found.metric)
    rows = [[run.name if run.role != Role.BASELINE else f"{run.method} (baseline)",
             "chosen configuration" if run.role != Role.BASELINE else "baseline",
             value_text(run, f"test_{found.metric}", named=False), value_text(run, found.metric, named=False)]
            for run in heldout_runs(details, found)]
    note = ("The test split, held out: the configuration above was chosen on validation commits alone, and no "
            "ranking, pruning or verdict reads these figures. Each run scored the test commits once, at its end; the "
            "intervals are bootstrap intervals over the test commits (\"-\" for runs from before they were logged).")
    return Section("Held-out test", [note, Table(["run", "role", f"test {name} [95 % interval]",
                                                  f"validation {name} [95 % interval]"], rows)])


def decision_section(details: SweepDetails, decision: Decision | None = None) -> Section:
    """Which method beats which, and each against the best baseline, with intervals (what they come to: the
    verdict)."""
    found = decision or decide(details)
    name = DISPLAY.get(found.metric, found.metric)
    blocks: list[Block] = []
    if found.pairs:
        commits = f"{found.commits} validation commits" + (
            f" ({found.positives} defective)" if found.positives is not None else "")
        blocks.append(f"Each line: A vs B, the difference in validation {name} (A - B) of their best trials with a "
                      f"paired bootstrap 95 % interval on the same {commits}, {RESAMPLES:,} resamples, seeded. "
                      "\"A is better\" only when the interval excludes 0; \"no clear difference\" does not mean "
                      "equal. Where both methods have repeats, Welch's test over the seeds follows.")
        blocks.extend(pair.sentence for pair in found.pairs)
    rows = []
    for method, trial in best_per(details, lambda t: t.method):
        rows.append([method, trial.name, value_text(trial, found.metric, named=False),
                     *repeat_cells(details, trial, found.metric)])
    for baseline in ranked(details.baselines, found.metric, "max"):
        rows.append([f"{baseline.method} (baseline)", "baseline", value_text(baseline, found.metric, named=False),
                     "-", "-", "-"])
    if rows:
        blocks.append(Table(["method", "best trial", f"{name} [95 % interval]", "repeats (seeds)",
                             "mean ± sd over repeats", "95 % interval of the mean"], rows))
        blocks.append("Intervals of a single run are bootstrap intervals over the validation commits (how much the "
                      "figure depends on which commits were validated on); the repeats train the best configuration "
                      "again with other seeds on the same commits (how much it depends on the seed), and leave out "
                      "the searched trial itself: picked as the best of the search, its value is biased upwards.")
    blocks.extend(found.notes)
    return Section("Decision", blocks)


def repeat_cells(details: SweepDetails, trial: TrialRun, metric: str) -> list[str]:
    """The repeats of `trial`'s configuration: how many with which seeds, mean ± sd, and the t interval of the mean."""
    repeats = repeats_of(details, trial, metric)
    if not repeats:
        return ["-", "-", "-"]
    mean, sd, (low, high) = spread([value for _, value in repeats])
    return [f"{len(repeats)} ({', '.join(str(seed) for seed, _ in repeats)})",
            f"{mean:.3f}" + ("" if math.isnan(sd) else f" ± {sd:.3f}"),
            "-" if math.isnan(low) else f"[{low:.3f}, {high:.3f}]"]


def repeats_section(details: SweepDetails) -> Section:
    """Every repeat run: the trial it repeats, its seed, state and best metric."""
    metric = details.record.metric
    rows = [[run.name, f"#{run.number}", run.method, run.params.get("seed", "?"), run.state, number(run.value(metric)),
             f"{run.compute_hours[0]:.4f} {run.compute_hours[1]}"] for run in details.repeats]
    return Section("Repeats", [Table(["run", "repeats trial", "method", "seed", "state", f"best {metric}", "compute"],
                                     rows)])


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
             f"({Direction(record.mode).phrase})."]
    if spec is not None:
        repeats = f" (then {spec.sweep.repeats} repeats of each method's best)" if spec.sweep.repeats else ""
        lines.append(f"Spec: {spec.sweep.trials} trials{repeats}, searcher `{spec.sweep.searcher}`, pruner "
                     f"`{spec.sweep.pruner.kind}`, backbone `{spec.backbone}`, data `{spec.data.path}` "
                     f"(sample {spec.data.sample or 'all'}), {spec.sweep.resources.cpu:g} CPU / "
                     f"{spec.sweep.resources.gpu:g} GPU per trial.")
    lines.append(trials_used_text(trials_used(details.tags, details.metrics, len(details.trials))))
    objectives = parse_objectives(details.tags.get(Tag.OBJECTIVES))
    if objectives:
        lines.append("Multi-objective study: " + ", ".join(
            f"**{metric}** ({Direction(mode).phrase})" for metric, mode in objectives)
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
    if details.baselines:
        rows.append(["baselines", str(len(details.baselines))])
    if details.repeats:
        states = [run.state for run in details.repeats]
        rows.append(["repeats", ", ".join(f"{states.count(state)} {state}" for state in State.ENDED
                                          if state in states)])
        spent: dict[str, float] = {}
        for run in details.repeats:
            hours, unit = run.compute_hours
            spent[unit] = spent.get(unit, 0.0) + hours
        rows.append(["compute spent on repeats", hours_text(spent)])
    note = ("Trials only, unless a row says otherwise: baselines and repeats are not the sweep's trials. "
            "Compute is training and evaluation time times the devices a trial had (CPUs, or its GPU share). "
            "Pruning saved the epochs pruned trials did not run, times the mean seconds per epoch of the "
            "trials of the same method.")
    return Section("Sweep totals", [Table(["trials / compute", "value"], rows), note])


def best_section(title: str, group: str, details: SweepDetails, key: Callable[[TrialRun], str | None],
                 baselines: list[TrialRun] | None = None) -> Section:
    """One row per group: the best completed trial's metrics and costs; then a row per baseline, marked."""
    metric = details.record.metric
    task = task_class(details.task)
    shown = [metric, *(name for name in task.shown if name != metric)]
    backbone = backbone_params(details)
    headers = [group, "trial", "run", *(f"best {name}" for name in shown), f"{metric} 95 % interval",
               "trainable params", "% of backbone", "peak memory", "train time", "compute", "artifacts"]
    rows = []
    for group_value, trial in [*best_per(details, key), *((f"{b.method} (baseline)", b) for b in baselines or [])]:
        trainable = trial.metrics.get("trainable_params")
        share = "-" if trainable is None or not backbone or trial.role == Role.BASELINE else \
            f"{100 * trainable / backbone:.2f}%"
        interval = trial.interval(metric)
        hours, unit = trial.compute_hours
        rows.append([group_value, "baseline" if trial.role == Role.BASELINE else trial.name, f"`{trial.run_id}`",
                     *(number(trial.value(name)) for name in shown),
                     "-" if interval is None else f"[{interval[0]:.4f}, {interval[1]:.4f}]",
                     count_text(trainable), share, megabytes(trial.metrics.get("peak_memory_mb")),
                     seconds_text(trial.metrics.get("train_seconds")), f"{hours:.4f} {unit}",
                     size_text(trial.artifact_bytes)])
    blocks: list[Block] = [Table(headers, rows)] if rows else ["No completed trial."]
    if rows and backbone:
        blocks.append(f"Backbone: {count_text(backbone)} parameters. Artifacts: the size of everything the run "
                      "logged (trained weights, config, metrics, predictions)."
                      + (" Baselines are logistic regressions fitted on the trials' training split: their trainable "
                         "parameters are the regression's weights, their train time the fit's." if baselines else ""))
    return Section(title, blocks)


def pareto_section(details: SweepDetails, out: Path, study: optuna.Study | None = None) -> Section:
    metric, mode = details.record.metric, details.record.mode
    objectives = study_objectives(study, details.tags.get(Tag.OBJECTIVES))
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


def optuna_pareto(details: SweepDetails, study: optuna.Study | None) -> list[tuple[optuna.trial.FrozenTrial, TrialRun | None]]:
    """The study's Pareto set (`study.best_trials`) with each trial's MLflow run, cheapest first; empty when the
    study is missing or single-objective."""
    if study is None or len(study.directions) < 2:
        return []
    runs = {trial.number: trial for trial in details.trials}
    return [(trial, runs.get(trial.number)) for trial in sorted(study.best_trials, key=lambda t: (t.values[-1], t.number))]


def optuna_pareto_section(details: SweepDetails, study: optuna.Study | None, why: str) -> Section:
    """The Pareto set the multi-objective Optuna study found, with both objective values as the study has them."""
    objectives = study_objectives(study, details.tags.get(Tag.OBJECTIVES))
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
