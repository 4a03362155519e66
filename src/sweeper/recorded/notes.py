"""Run notes: the Markdown the MLflow UI shows as a run's Description.

A trial's note says in one line what it was and how it ended; a sweep's note is its summary: its
verdict first (`sweeper.report.verdict`), trials by state, the best trial per method (with its 95 % interval where
the trial logged one), the decision of `sweeper report` once it has run, and a link to the report. The driver writes
the sweep's note with its verdict when the sweep ends and the report rewrites it with its decision lines
(`write_sweep_note`).

    >>> trial_note("lora rank 8, lr 3.2e-4", "pruned", evaluations=2, planned=6)
    'lora rank 8, lr 3.2e-4: pruned at evaluation 2 of 6'
    >>> trial_note("full, lr 2e-5", "failed", evaluations=0, planned=3, reason="TrialFailed: NaN loss")
    'full, lr 2e-5: failed: TrialFailed: NaN loss'
    >>> trial_note("adapter placement ffn, lr 1e-3", "complete", evaluations=3, planned=3, outcome="best auc 0.7120")
    'adapter placement ffn, lr 1e-3: complete after 3 of 3 evaluations, best auc 0.7120'
"""

from __future__ import annotations

from typing import Any

from sweeper.tracking.client import Tracker
from sweeper.direction import Direction
from sweeper.tracking.schema import BEST_PREFIX, CI_HIGH, CI_LOW, REPORT_FOLDER, REPORT_HTML, State
from sweeper.recorded.sweeps import SweepRecord, TrialRun, best_per_method, ranked, trial_runs
from sweeper.tracking.views import run_page


def short_number(value: float) -> str:
    """A learning rate or other small number the way people write it: 3.2e-4, 2e-5, 0.1.

    >>> short_number(0.00032), short_number(2e-05), short_number(0.1)
    ('3.2e-4', '2e-5', '0.1')
    """
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.3g}"
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa.removesuffix('.0')}e{int(exponent)}"


def trial_label(config: Any) -> str:
    """What a trial is, in a few words: its method, the settings its method shows, its learning rate."""
    from sweeper.methods import METHODS

    method = METHODS[config.method]
    section = getattr(config, config.method, None)
    settings = [f"{name} {getattr(section, name)}" for name in method.shown if section is not None]
    return ", ".join([" ".join([config.method, *settings]), f"lr {short_number(config.lr)}"])


def trial_note(label: str, state: str, evaluations: int, planned: int | None, reason: str | None = None,
               outcome: str | None = None) -> str:
    """One line: the trial's label and how it ended (`planned`: the evaluations it would have had, when known)."""
    at = f"evaluation {evaluations}" + (f" of {planned}" if planned else "")
    if state == State.FAILED:
        return f"{label}: failed: {reason or 'unknown error'}"
    if state == State.PRUNED:
        return f"{label}: pruned at {at}"
    if state == State.KILLED:
        return f"{label}: killed at {at} (the sweep stopped)" if evaluations else f"{label}: killed before evaluating"
    done = f"{evaluations} of {planned} evaluations" if planned else f"{evaluations} evaluations"
    ended = f"complete, stopped early after {done}" if planned and evaluations < planned else f"complete after {done}"
    return f"{label}: {ended}" + (f", {outcome}" if outcome else "")


def interval(metrics: dict[str, float], metric: str) -> tuple[float, float] | None:
    """A trial's 95 % interval of `metric` if it logged one (`best_auc_ci_low`, or `auc_ci_low`)."""
    for name in (BEST_PREFIX + metric, metric):
        low, high = metrics.get(name + CI_LOW), metrics.get(name + CI_HIGH)
        if low is not None and high is not None:
            return low, high
    return None


def sweep_note(sweep: SweepRecord, trials: list[TrialRun], decision: list[str] | None = None,
               report: bool = False, verdict: str | None = None) -> str:
    """The sweep's summary in Markdown, its verdict first (links are relative to the UI, so they work behind any host
    or prefix)."""
    counts = {state: sum(1 for trial in trials if trial.state == state) for state in State.ENDED}
    lines = [f"**Verdict**: {verdict}", ""] if verdict else []
    lines += [f"**Sweep `{sweep.sweep_id}`**: {len(trials)} trials, "
             + ", ".join(f"{count} {state}" for state, count in counts.items())
             + f"; ranked by **{sweep.metric}** ({Direction(sweep.mode).phrase}).", ""]
    best = best_per_method(ranked(trials, sweep.metric, sweep.mode))
    if best:
        lines += [f"| method | best {sweep.metric} | 95 % interval | trial | trainable params | train time |",
                  "|---|---|---|---|---|---|"]
        for trial in best:
            bounds = interval(trial.metrics, sweep.metric)
            shown = f"{bounds[0]:.4f} to {bounds[1]:.4f}" if bounds else "-"
            link = f"[{trial.name}]({run_page(sweep.experiment_id, trial.run_id)})"
            lines.append(f"| {trial.method} | {trial.value(sweep.metric):.4f} | {shown} | {link} | "
                         f"{int(trial.metrics.get('trainable_params', 0)):,} | "
                         f"{trial.metrics.get('train_seconds', 0.0):.1f} s |")
    else:
        lines.append("No trial completed: see each trial's description and its `sweeper.failure` tag.")
    if decision:
        lines += ["", "**Decision**", "", "\n\n".join(decision)]
    if report:
        path = f"{REPORT_FOLDER}/{REPORT_HTML}"
        lines += ["", f"Report: [{path}]({run_page(sweep.experiment_id, sweep.run_id, path)})"]
    return "\n".join(lines) + "\n"


def write_sweep_note(tracker: Tracker, sweep: SweepRecord, decision: list[str] | None = None,
                     verdict: str | None = None) -> str:
    """Write the sweep's note from what MLflow holds now (and the `verdict`, and `decision`, `sweeper report`'s
    lines); returns it."""
    report = any(item.path.endswith("/" + REPORT_HTML) for item in tracker.client.list_artifacts(sweep.run_id,
                                                                                                   REPORT_FOLDER))
    note = sweep_note(sweep, trial_runs(tracker, sweep), decision, report, verdict)
    tracker.set_note(sweep.run_id, note)
    return note
