"""The report's PNG figures (matplotlib, Agg): the verdict's forest plot, Pareto fronts, learning curves, importances,
parallel coordinates.

Figures are built with `matplotlib.figure.Figure`, never pyplot, so no GUI backend or global state is used.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from sweeper.methods import METHODS  # noqa: E402
from sweeper.report.analysis import FRONT_COSTS, FractionBest, pareto_front, train_fraction  # noqa: E402
from sweeper.report.wording import DISPLAY  # noqa: E402
from sweeper.report.verdict import Verdict  # noqa: E402
from sweeper.direction import Direction  # noqa: E402
from sweeper.tracking.schema import COSTS, State  # noqa: E402
from sweeper.recorded.sweeps import SweepDetails, TrialRun, searched_keys, searched_params  # noqa: E402

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
DPI = 110


def color(method: str) -> str:
    """A fixed colour per method (its place in the method registry), the same in every figure."""
    names = list(METHODS)
    index = names.index(method) if method in names else len(names) + sum(map(ord, method))
    return PALETTE[index % len(PALETTE)]


def save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    return path


def forest_figure(found: Verdict, path: Path) -> Path | None:
    """Each comparison of the verdict a line: its paired difference (A - B) and 95 % interval against zero, the
    baselines' first; resolved ones solid, the rest hollow and grey."""
    lines = [c for c in found.comparisons() if c.difference is not None]
    if not lines:
        return None
    figure = Figure(figsize=(8.0, 0.9 + 0.38 * len(lines)), layout="constrained")
    axes = figure.add_subplot(1, 1, 1)
    for row, comparison in enumerate(reversed(lines)):
        d = comparison.difference
        solid = bool(comparison.side)
        axes.errorbar([d.value], [row], xerr=[[d.value - d.low], [d.high - d.value]], fmt="o",
                      color="black" if solid else "#888888", markerfacecolor="black" if solid else "white", capsize=3)
    axes.axvline(0.0, color="#d62728", linewidth=1.0, linestyle="--")
    axes.set_yticks(range(len(lines)),
                    [f"{c.factor}: {c.name_a} - {c.name_b}" for c in reversed(lines)], fontsize=8)
    axes.set_xlabel(f"difference in validation {DISPLAY.get(found.metric, found.metric)} (A - B), paired 95 % interval")
    axes.set_title("The verdict's comparisons: solid = resolved, hollow = not")
    return save(figure, path)


def pareto_figure(details: SweepDetails, path: Path, optuna_set: list[TrialRun] | None = None,
                  objective_cost: str | None = None) -> Path | None:
    """Metric against trainable parameters and against train time (and the cost objective of a multi-objective
    sweep); the front joined and ringed; the Pareto set of a multi-objective Optuna study ringed in red."""
    metric, mode = details.record.metric, details.record.mode
    trials = details.completed()
    if not trials:
        return None
    costs = {cost: COSTS[cost] for cost in FRONT_COSTS}
    if objective_cost and objective_cost not in costs:
        costs[objective_cost] = COSTS.get(objective_cost, objective_cost)
    figure = Figure(figsize=(5.5 * len(costs), 4.6), layout="constrained")
    for index, (cost, label) in enumerate(costs.items()):
        axes = figure.add_subplot(1, len(costs), index + 1)
        for method in sorted({t.method for t in trials}):
            group = [t for t in trials if t.method == method and cost in t.metrics]
            axes.scatter([t.metrics[cost] for t in group], [t.value(metric) for t in group], s=36,
                         color=color(method), label=method, alpha=0.85, zorder=3)
        front = pareto_front(trials, metric, mode, cost)
        xs, ys = [t.metrics[cost] for t in front], [t.value(metric) for t in front]
        axes.step(xs, ys, where="post", color="black", linewidth=1.2, zorder=2, label="Pareto front")
        axes.scatter(xs, ys, s=120, facecolors="none", edgecolors="black", linewidths=1.3, zorder=4)
        for trial, x, y in zip(front, xs, ys):
            axes.annotate(f"#{trial.number}", (x, y), textcoords="offset points", xytext=(6, -12), fontsize=8)
        ringed = [t for t in optuna_set or [] if cost in t.metrics and t.value(metric) is not None]
        if ringed:
            axes.scatter([t.metrics[cost] for t in ringed], [t.value(metric) for t in ringed], s=230, marker="o",
                         facecolors="none", edgecolors="#d62728", linewidths=1.6, zorder=5,
                         label=f"Optuna Pareto set ({metric} vs {COSTS.get(objective_cost or '', objective_cost)})")
        if cost == "trainable_params" and max(xs + [1.0]) / max(min(xs + [1.0]), 1.0) > 20:
            axes.set_xscale("log")
        axes.margins(x=0.12, y=0.08)
        suffix = " (s)" if cost.endswith("_seconds") else " (MB)" if cost == "peak_memory_mb" else ""
        axes.set_xlabel(f"{label}{suffix}, lower is cheaper")
        axes.set_ylabel(f"best {metric} ({Direction(mode).phrase})")
        axes.set_title(f"{metric} vs {label}")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8, loc="best")
    figure.suptitle(f"Sweep {details.record.sweep_id}: metric vs cost (ringed: Pareto front"
                    f"{'; red: the Optuna Pareto set' if optuna_set else ''})")
    return save(figure, path)


def curves_figure(details: SweepDetails, path: Path) -> Path | None:
    """Metric per evaluation, one panel per method; pruned trials dashed and cut short with an x."""
    metric = details.record.metric
    methods = sorted({t.method for t in details.trials if t.curve})
    if not methods:
        return None
    figure = Figure(figsize=(4.4 * len(methods) + 0.6, 4.6), layout="constrained")
    panels = figure.subplots(1, len(methods), sharey=True, squeeze=False)[0]
    last_epoch = max(t.curve[-1][0] for t in details.trials if t.curve)
    for index, (method, axes) in enumerate(zip(methods, panels)):
        trials = [t for t in details.trials if t.method == method and t.curve]
        palette = matplotlib.colormaps["tab10"]
        for shade, trial in enumerate(trials):
            xs, ys = zip(*trial.curve)
            pruned = trial.state != State.COMPLETE
            axes.plot(xs, ys, linestyle="--" if pruned else "-", marker="o", markersize=3.5, linewidth=1.5,
                      color=palette(shade % 10), alpha=0.9)
            if pruned:
                axes.plot(xs[-1], ys[-1], marker="x", markersize=9, markeredgewidth=2, color=palette(shade % 10))
            axes.annotate(f"#{trial.number}", (xs[-1], ys[-1]), textcoords="offset points", xytext=(5, 2), fontsize=8)
        axes.set_title(f"{method} ({len(trials)} trial{'s' if len(trials) > 1 else ''})", color=color(method))
        axes.set_xlabel("epoch")
        axes.set_ylabel(metric if index == 0 else "")
        axes.grid(True, alpha=0.3)
        axes.set_xlim(0.8, last_epoch + 0.45)
        axes.xaxis.get_major_locator().set_params(integer=True)
    handles = [Line2D([], [], color="gray", linestyle="-", marker="o", label="complete"),
               Line2D([], [], color="gray", linestyle="--", marker="x", label="pruned / stopped (cut)")]
    figure.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=9)
    figure.suptitle(f"Learning curves: validation {metric} per evaluation (#n = Optuna trial)")
    return save(figure, path)


def fraction_figure(details: SweepDetails, rows: list[FractionBest], path: Path) -> Path | None:
    """The best metric per method against the share of the training split it trained on (the study's
    low-resource question); every completed trial a faint dot behind its method's line."""
    if not rows:
        return None
    metric, mode = details.record.metric, details.record.mode
    figure = Figure(figsize=(6.4, 4.6), layout="constrained")
    axes = figure.add_subplot(1, 1, 1)
    for method in sorted({row.method for row in rows}):
        mine = [row for row in rows if row.method == method]
        dots = [t for t in details.completed() if t.method == method]
        axes.scatter([train_fraction(t) for t in dots], [t.value(metric) for t in dots],
                     s=14, color=color(method), alpha=0.3, zorder=2)
        axes.plot([row.fraction for row in mine], [row.best.value(metric) for row in mine], marker="o", linewidth=1.8,
                  color=color(method), label=method, zorder=3)
    fractions = sorted({row.fraction for row in rows})
    if fractions[-1] / fractions[0] >= 10:
        axes.set_xscale("log")
    axes.set_xticks(fractions, [f"{fraction:g}" for fraction in fractions])
    axes.minorticks_off()
    axes.set_xlabel("share of the training split trained on")
    axes.set_ylabel(f"best {metric} ({Direction(mode).phrase})")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, loc="best")
    axes.set_title(f"Low-resource: best {metric} per method against the training fraction")
    return save(figure, path)


def importance_figure(groups: dict[str, dict[str, float]], path: Path) -> Path | None:
    """One horizontal bar chart of fANOVA importances per group ('all', 'method=lora', ...)."""
    if not groups:
        return None
    figure = Figure(figsize=(4.6 * len(groups) + 0.6, 0.5 * max(len(v) for v in groups.values()) + 2.0),
                    layout="constrained")
    for index, (name, values) in enumerate(groups.items()):
        axes = figure.add_subplot(1, len(groups), index + 1)
        keys = sorted(values, key=values.get)
        method = name.removeprefix("method=")
        axes.barh(keys, [values[key] for key in keys], color=color(method) if name != "all" else "#555555")
        for y, key in enumerate(keys):
            axes.text(values[key] + 0.01, y, f"{values[key]:.2f}", va="center", fontsize=8)
        axes.set_xlim(0, 1.15)
        axes.set_title("all completed trials" if name == "all" else f"{method} trials")
        axes.set_xlabel("importance (fANOVA)")
    figure.suptitle("Hyper-parameter importances (Optuna)")
    return save(figure, path)


def parallel_figure(details: SweepDetails, path: Path) -> Path | None:
    """Parallel coordinates of the searched parameters and the metric over completed trials, coloured by metric.

    A conditional parameter a trial does not have sits at the 'n/a' mark at the bottom of its axis.
    """
    metric = details.record.metric
    trials = details.completed()
    keys = searched_keys(details)
    if not trials or not keys:
        return None
    columns = keys + [metric]
    params = [searched_params(details, trial) for trial in trials]
    scales = {key: AxisScale([values.get(key) for values in params]) for key in keys}
    values = [t.value(metric) or 0.0 for t in trials]
    low, high = min(values), max(values)
    figure = Figure(figsize=(max(2.2 * len(columns), 7), 4.8), layout="constrained")
    axes = figure.add_subplot(1, 1, 1)
    colormap = matplotlib.colormaps["viridis"]
    for values_of, value in zip(params, values):
        ys = [scales[key].position(values_of.get(key)) for key in keys] + [unit(value, low, high)]
        shade = unit(value, low, high)
        axes.plot(range(len(columns)), ys, color=colormap(shade), linewidth=1.8, alpha=0.85, marker="o", markersize=3)
    for index, key in enumerate(columns):
        axes.axvline(index, color="black", linewidth=0.8)
        ticks = scales[key].ticks() if key in scales else [(unit(v, low, high), f"{v:.3f}") for v in (low, (low + high) / 2, high)]
        for y, text in ticks:
            axes.text(index - 0.04, y, text, ha="right", va="center", fontsize=8,
                      bbox=dict(facecolor="white", edgecolor="none", alpha=0.7, pad=0.5))
    axes.set_xticks(range(len(columns)), [f"best {metric}" if key == metric else key for key in columns], fontsize=9)
    axes.set_yticks([])
    axes.set_ylim(-0.2, 1.08)
    axes.set_xlim(-0.6, len(columns) - 0.7)
    for side in ("top", "right", "left"):
        axes.spines[side].set_visible(False)
    mappable = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(low, high), cmap=colormap)
    figure.colorbar(mappable, ax=axes, label=f"best {metric}", fraction=0.03, pad=0.02)
    axes.set_title(f"Parallel coordinates of the {len(trials)} completed trials")
    return save(figure, path)


def unit(value: float, low: float, high: float) -> float:
    """`value` mapped to [0, 1] between low and high (0.5 when they are equal)."""
    return 0.5 if high == low else (value - low) / (high - low)


NA = -0.12  # where a trial without a conditional parameter sits on that axis


class AxisScale:
    """Places a logged param value on a [0, 1] axis: numeric (linear or log) or categorical."""

    def __init__(self, texts: list[str | None]) -> None:
        present = sorted({text for text in texts if text is not None})
        numbers = [as_number(text) for text in present]
        self.numeric = bool(present) and all(n is not None for n in numbers)
        self.has_na = any(text is None for text in texts)
        if self.numeric:
            nums = [n for n in numbers if n is not None]
            self.low, self.high = min(nums), max(nums)
            self.log = self.low > 0 and self.high / self.low >= 20
            self.categories: list[str] = []
        else:
            self.categories = present

    def position(self, text: str | None) -> float:
        if text is None:
            return NA
        if self.numeric:
            number = as_number(text) or 0.0
            if self.log:
                return unit(math.log10(number), math.log10(self.low), math.log10(self.high))
            return unit(number, self.low, self.high)
        if len(self.categories) == 1:
            return 0.5
        return self.categories.index(text) / (len(self.categories) - 1)

    def ticks(self) -> list[tuple[float, str]]:
        marks: list[tuple[float, str]]
        if self.numeric and self.low == self.high:
            marks = [(0.5, f"{self.low:.3g}")]
        elif self.numeric:
            marks = [(0.0, f"{self.low:.3g}"), (1.0, f"{self.high:.3g}")]
            if self.log:
                marks.insert(1, (0.5, f"{10 ** ((math.log10(self.low) + math.log10(self.high)) / 2):.3g}"))
        else:
            marks = [(self.position(text), text) for text in self.categories]
        return marks + ([(NA, "n/a")] if self.has_na else [])


def as_number(text: str | None) -> float | None:
    """The number in a logged param, or None."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return None
