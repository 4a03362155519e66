"""The verdict: one to three plain sentences on a recorded sweep that claim only what its intervals support.

It answers, in order: does any fine-tuned configuration beat the best baseline (by how much, with the paired
interval); which searched factors have a clear effect and which do not (`effects.factor_effects`); and which
configuration to use: the cheapest whose difference from the best trial is not resolvable. When nothing is
resolvable it says so, with the validation split's resolution (`metrics.resolution`) and what would resolve more.

Resolved means the paired bootstrap interval on the same validation commits excludes 0 and, where both sides were
repeated over seeds, Welch's test agrees (`metrics.bootstrap.resolved`): a method compared over seeds has its seed
spread in the reasoning.

Cost: configurations are ranked by estimated training FLOPs (`train_flops`, hardware-free, so trials that ran on
different machines compare), then by trainable parameters; where a trial lacks FLOPs (older runs), by measured
training seconds (`train_seconds`, comparable within one device kind only). Both are shown.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sweeper.report.wording import DISPLAY
from sweeper.metrics.resolution import Resolution, split_resolution
from sweeper.metrics.text import sentence_bleu
from sweeper.report.analysis import decision_metric, label, repeats_of, spread, value_text
from sweeper.report.effects import Comparison, Factor, contrast, factor_effects
from sweeper.tracking.client import Tracker
from sweeper.recorded.notes import short_number
from sweeper.tracking.schema import RESOLVABLE_DIFFERENCE, VALIDATION_COMMITS, VALIDATION_POSITIVES, VERDICT_FILE
from sweeper.recorded.sweeps import SweepDetails, SweepRecord, TrialRun, load_sweep, ranked, searched_params

COSTS_RANKED = ("train_flops", "train_seconds")  # the first every candidate logged ranks; trainable params break ties
RESOLVE_MORE = ("more validation commits (rolling evaluation validates on more of the history without training on less: "
                "`data.split: {kind: time, valid: 0.5, folds: 4}`) or `sweep.repeats: 3` would resolve smaller "
                "differences")


@dataclass(frozen=True)
class Verdict:
    """The sentences and what they rest on: the metric, the split's resolution, the best fine-tuned configuration
    against the best baseline (one comparison per method's best), the factors, the chosen configuration against
    the best trial, and the cost the choice ranked by."""

    sentences: list[str]
    metric: str
    resolution: Resolution | None
    baselines: list[Comparison] = field(default_factory=list)
    factors: list[Factor] = field(default_factory=list)
    chosen: Comparison | None = None
    cost: str = "train_flops"

    @property
    def text(self) -> str:
        return " ".join(self.sentences)

    def comparisons(self) -> list[Comparison]:
        """Every comparison the verdict rests on, baselines first: the forest plot's lines."""
        return [*self.baselines, *(c for factor in self.factors for c in factor.comparisons),
                *([self.chosen] if self.chosen and self.chosen.a.run_id != self.chosen.b.run_id else [])]

    def as_dict(self) -> dict[str, Any]:
        """The verdict's JSON artifact on the parent run (`VERDICT_FILE`)."""
        resolution = self.resolution
        return {"verdict": self.text, "sentences": self.sentences, "metric": self.metric, "cost": self.cost,
                "resolution": None if resolution is None else {
                    "value": resolution.value, "metric": resolution.metric, "commits": resolution.commits,
                    "positives": resolution.positives, "sentence": resolution.sentence},
                "chosen_run_id": self.chosen.a.run_id if self.chosen else None,
                "factors": {factor.key: {"clear": factor.clear, "levels": [[name, run.run_id]
                                                                           for name, run in factor.levels]}
                            for factor in self.factors},
                "comparisons": [comparison.as_dict() for comparison in self.comparisons()]}


def verdict(details: SweepDetails) -> Verdict:
    """The verdict on a sweep whose completed trials' and baselines' predictions are loaded (`load_sweep`)."""
    metric = decision_metric(details)
    completed = details.completed()
    resolution = sweep_resolution(details)
    if not completed:
        return Verdict(["No fine-tuned trial completed: nothing to decide."], metric, resolution)
    best = completed[0]
    baseline = next(iter(ranked(details.baselines, metric, "max")), None)
    methods: dict[str, TrialRun] = {}
    for trial in completed:
        methods.setdefault(trial.method, trial)
    against = [contrast(details, "baseline", trial.method, trial, label(baseline), baseline, metric)
               for trial in methods.values()] if baseline else []
    factors = factor_effects(details, metric)
    cost = cost_basis(completed)
    chosen = choose(details, best, metric, cost)
    nothing = not any(c.side for c in against) and not any(factor.clear for factor in factors)
    sentences = [baseline_sentence(details, best, baseline, against, metric)] if baseline else []
    compared = [*against, *(c for factor in factors for c in factor.comparisons)]
    if compared and all(c.difference is None for c in compared):
        sentences = ["No comparison can be made: the runs logged no validation predictions (`predictions.csv`; a "
                     "sweep from an older release?)."]
    elif nothing and compared:
        sentences = [nothing_sentence(details, best, baseline, against, factors, metric, resolution)]
    elif factors:
        sentences.append(factor_sentence(factors, metric, resolution))
    beaten = baseline is None or any(c.side > 0 for c in against)
    sentences.append(choice_sentence(details, best, chosen, metric, cost, beaten))
    return Verdict(sentences, metric, resolution, against, factors, chosen, cost)


def sweep_resolution(details: SweepDetails) -> Resolution | None:
    """The validation split's resolution: from the predictions (labels; for message generation the best trial's
    per-commit BLEU spread), else as the sweep logged it before its first trial."""
    best = next(iter(details.completed()), None)
    found = details.predictions.get(best.run_id) if best else None
    found = found or next(iter(details.predictions.values()), None)
    if found is not None and found.task == "jitdp":
        return split_resolution("jitdp", [int(label) for label, _ in found.rows.values()])
    if found is not None:
        return split_resolution("cmg", list(found.rows), [sentence_bleu(r, p) for r, p in found.rows.values()])
    if RESOLVABLE_DIFFERENCE in details.metrics:
        positives = details.metrics.get(VALIDATION_POSITIVES)
        return Resolution(details.metrics[RESOLVABLE_DIFFERENCE], "auc" if details.task == "jitdp" else "bleu",
                          int(details.metrics.get(VALIDATION_COMMITS, 0)),
                          None if positives is None else int(positives))
    return None


def cost_basis(trials: list[TrialRun]) -> str:
    """`train_flops` when every trial logged it, else `train_seconds`."""
    return next((cost for cost in COSTS_RANKED if all(trial.metrics.get(cost) for trial in trials)), "train_seconds")


def choose(details: SweepDetails, best: TrialRun, metric: str, cost: str) -> Comparison | None:
    """The cheapest completed trial (by `cost`, then trainable parameters) that the best trial does not resolvably
    beat, compared with the best; None when the best has no predictions to compare against."""
    if best.run_id not in details.predictions:
        return None
    candidates = sorted((trial for trial in details.completed() if trial.run_id in details.predictions),
                        key=lambda t: (t.metrics.get(cost, math.inf), t.metrics.get("trainable_params", math.inf)))
    for trial in candidates:
        if trial.run_id == best.run_id:
            break
        comparison = contrast(details, "choice", trial.name, trial, best.name, best, metric)
        if comparison.difference is not None and comparison.side >= 0:
            return comparison
    return Comparison("choice", best.name, best.name, best, best, None, None, 0)


def shown(difference: Any, metric: str) -> str:
    """`AUC +0.013 [-0.046, +0.052]`."""
    if difference is None:
        return "no paired interval (a run logged no predictions)"
    return f"{DISPLAY.get(metric, metric)} {difference.value:+.3f} [{difference.low:+.3f}, {difference.high:+.3f}]"


def baseline_sentence(details: SweepDetails, best: TrialRun, baseline: TrialRun, against: list[Comparison],
                      metric: str) -> str:
    """Does any fine-tuned configuration beat the best baseline, and by how much."""
    named = f"the best baseline, {baseline.method} ({value_text(baseline, metric)})"
    winners = [c for c in against if c.side > 0 and c.difference is not None]
    if winners:
        top = max(winners, key=lambda c: c.difference.value)  # type: ignore[union-attr]
        return (f"A fine-tuned configuration beats the best baseline: {configuration(details, top.a)} beats "
                f"{baseline.method} ({value_text(baseline, metric)}) by {shown(top.difference, metric)}{seeds(top)}.")
    top = next(c for c in against if c.a.run_id == best.run_id)
    if against and all(c.side < 0 for c in against):
        return (f"{named[0].upper()}{named[1:]}, beats every fine-tuned configuration: the best, "
                f"{configuration(details, best)}, differs by {shown(top.difference, metric)}{seeds(top)}.")
    return (f"No fine-tuned configuration resolvably beats {named}: the best, {configuration(details, best)}, "
            f"differs by {shown(top.difference, metric)}{seeds(top)}.")


def factor_sentence(factors: list[Factor], metric: str, resolution: Resolution | None) -> str:
    """Which searched factors have a clear effect (the largest resolved difference each) and which do not."""
    parts = []
    for factor in factors:
        strongest = factor.strongest()
        if strongest is not None:
            better = strongest.name_a if strongest.side > 0 else strongest.name_b
            worse = strongest.name_b if strongest.side > 0 else strongest.name_a
            parts.append(f"`{factor.key}` matters ({better} over {worse}: {shown(strongest.difference, metric)}"
                         f"{seeds(strongest)})")
    covered = [text for factor in factors if (text := seed_covered(factor, metric))]
    parts += covered
    unclear = [f"`{factor.key}`" for factor in factors if not factor.clear and not seed_covered(factor, metric)]
    if unclear:
        why = f" ({resolution.sentence})" if resolution is not None else ""
        parts.append(f"{join(unclear)} show{'s' if len(unclear) == 1 else ''} no clear effect{why}")
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


def nothing_sentence(details: SweepDetails, best: TrialRun, baseline: TrialRun | None, against: list[Comparison],
                     factors: list[Factor], metric: str, resolution: Resolution | None) -> str:
    """Nothing resolved: what was compared, the split's resolution, and what would resolve more."""
    compared = []
    if baseline is not None:
        top = next(c for c in against if c.a.run_id == best.run_id)
        compared.append(f"the best configuration, {configuration(details, best)}, against the best baseline, "
                        f"{baseline.method}: {shown(top.difference, metric)}{seeds(top)}")
    if factors:
        compared.append(f"no searched factor ({join([f'`{f.key}`' for f in factors])}) has a clear effect")
        compared += [text for factor in factors if (text := seed_covered(factor, metric))]
    head = "Nothing in this sweep is resolvable" + (": " + ", and ".join(compared) if compared else "")
    limit = f"{resolution.sentence}; " if resolution is not None else ""
    return f"{head}. {limit[0].upper() + limit[1:] if limit else ''}{RESOLVE_MORE}."


def choice_sentence(details: SweepDetails, best: TrialRun, chosen: Comparison | None, metric: str, cost: str,
                    beaten: bool = True) -> str:
    """Which configuration to use, and why that one; when no configuration beat the best baseline (`beaten`), only
    if a fine-tuned model is wanted at all."""
    use = "Use" if beaten else "If a fine-tuned model is wanted all the same, use"
    if chosen is None:
        return (f"{use} {configuration(details, best)}, the best trial: no predictions to test cheaper configurations "
                "against it.")
    over = seed_spread(details, chosen.a, metric)
    if chosen.a.run_id == best.run_id:
        cheaper = [t for t in details.completed() if t.metrics.get(cost, math.inf) < best.metrics.get(cost, math.inf)]
        why = "no cheaper configuration is within noise of it" if cheaper else "none is cheaper"
        return f"{use} {configuration(details, best)}, the best trial, at {cost_text(best, cost)}: {why}{over}."
    return (f"{use} {configuration(details, chosen.a)}: the cheapest configuration within noise of the best, "
            f"{best.name} ({shown(chosen.difference, metric)} from it), at {cost_text(chosen.a, cost, best)}{over}.")


def configuration(details: SweepDetails, trial: TrialRun) -> str:
    """`trial-003 (lora, features expert, lr 3.2e-4)`: the trial and its searched values."""
    values = [f"{key} {short(value)}" for key, value in searched_params(details, trial).items() if key != "method"]
    return f"{trial.name} ({', '.join([trial.method, *values])})"


def short(value: str) -> str:
    try:
        return short_number(float(value))
    except ValueError:
        return value


def cost_text(trial: TrialRun, cost: str, against: TrialRun | None = None) -> str:
    """`1.2e+13 training FLOPs (35 s of training)`, or against another trial's: `2e+12 against 1e+13 training FLOPs
    (20 s against 95 s of training)`; by seconds alone where the ranking went by seconds."""
    def pair(name: str, shown: Callable[[float], str]) -> str:
        value = shown(trial.metrics.get(name, math.nan))
        return value if against is None else f"{value} against {shown(against.metrics.get(name, math.nan))}"
    seconds = pair("train_seconds", lambda value: f"{value:.1f} s" if value < 100 else f"{value:.0f} s")
    if cost != "train_flops":
        return f"{seconds} of training (no training FLOPs logged)"
    return f"{pair('train_flops', lambda value: f'{value:.2g}')} training FLOPs ({seconds} of training)"


def seeds(comparison: Comparison) -> str:
    """`; over 3 and 3 seeds +0.020, Welch p = 0.04` where both sides were repeated."""
    repeats = comparison.repeats
    if repeats is None or math.isnan(repeats.p_value):
        return ""
    count = f"{repeats.n_a}" if repeats.n_a == repeats.n_b else f"{repeats.n_a} and {repeats.n_b}"
    return f"; over {count} seeds {repeats.difference:+.3f}, Welch p = {repeats.p_value:.2g}"


def seed_covered(factor: Factor, metric: str) -> str | None:
    """`` `method` is not clear over seeds (lora over full: AUC +0.041 [+0.012, +0.070] on these commits; over 3
    seeds +0.010, Welch p = 0.41) ``: a gap the commits resolve and the seeds' spread covers; None without one."""
    if factor.clear:
        return None
    for c in factor.comparisons:
        d = c.difference
        if d is not None and c.repeats is not None and (d.low > 0 or d.high < 0):
            return (f"`{factor.key}` is not clear over seeds ({c.name_a} over {c.name_b}: {shown(d, metric)} on these "
                    f"commits{seeds(c)})")
    return None


def seed_spread(details: SweepDetails, trial: TrialRun, metric: str) -> str:
    """`; over 3 seeds its AUC is 0.838 ± 0.010 (sd)` where the trial was repeated."""
    values = [value for _, value in repeats_of(details, trial, metric)]
    if len(values) < 2:
        return ""
    mean, sd, _ = spread(values)
    return f"; over {len(values)} seeds its {DISPLAY.get(metric, metric)} is {mean:.3f} ± {sd:.3f} (sd)"


def join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def sweep_verdict(tracker: Tracker, sweep: SweepRecord) -> Verdict:
    """The verdict on a recorded sweep, read from MLflow (without learning curves: a few requests per trial)."""
    return verdict(load_sweep(tracker, sweep, curves=False))


def log_verdict(tracker: Tracker, sweep: SweepRecord, found: Verdict) -> None:
    """The verdict and every comparison it rests on, as the parent run's `VERDICT_FILE`."""
    tracker.client.log_dict(sweep.run_id, found.as_dict(), VERDICT_FILE)
