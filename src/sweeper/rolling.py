"""Rolling-origin evaluation (`data.split: {kind: time, folds: K}`): a trial trained once per validation window.

A single time split validates on one stretch of time; with few defective commits there, its AUC is too noisy to
tell methods apart. A rolling trial cuts the validation commits into K successive windows (`split.rolling_windows`)
and, for each, trains the configuration afresh on every older commit and scores the window with that window's best
evaluation. The trial's metrics and bootstrap intervals come from the windows' predictions pooled: every validated
commit once, each scored by a model that never saw it nor anything newer. Its `predictions.csv` is the pooled one,
in the validation split's order, so the report, paired comparisons and `sweeper best` read it as any trial's.

What it reports, once per window (step = the window's number): the metrics pooled over the windows so far under
the task's names (`auc`: the pruner compares trials at the same window, and never prunes at the last) and the
window's own figures (`window_auc`, `window_commits`, ...; `tracking.schema.WINDOW_PREFIX`). A window whose commits
are all of one class has no AUC, F1 or MCC of its own (the pooled ones still count it); its evaluations cannot be
ranked, so it keeps its last one (the whole training plan).

The encoding and the frozen-prefix cache are the single split's (`cache.encoded.encoding_key` leaves `folds` out):
encoded once for the union, filled once by the first window. Each window starts from the trial's seed, so a trial
resumed after window k (its checkpoint holds the windows done) goes on exactly. The saved model, the test metrics
(the test split comes after the last window) and `sweeper predict` use the last window's model. Defect prediction
only (`config.check_folds`). It costs about K trainings, on training sets growing with each window.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sweeper.artifacts import MODEL_DIR, STATE_FILE, write_trial
from sweeper.config import TrialConfig
from sweeper.machine import machine_tags
from sweeper.methods import save_trained
from sweeper.metrics.classification import classification_metrics
from sweeper.tasks import Prediction
from sweeper.timings import timed
from sweeper.tracking.schema import EPOCH, TRAIN_LOSS, WINDOW_COUNTS, WINDOW_PREFIX, Tag, window_metric_name
from sweeper.recipe import (Evaluation, Prepared, Progress, Reporter, TrialResult, best_metrics, build_model, restore,
                            seed_everything, train, trial_costs)

ROLLING = "rolling"  # the key of a rolling trial's state in its checkpoint's training_state.pt


@dataclass
class WindowResult:
    """One window: its best evaluation's metrics and predictions (its commits, in order), the figures it was
    reported with, and its training's progress (counts and times; no weights)."""

    metrics: dict[str, float]
    predictions: list[Prediction]
    figures: dict[str, float]
    progress: Progress


@dataclass
class RollingState:
    """The windows done, the last one's best trained weights and the token positions of any frozen-prefix cache
    fill: what a resumed trial needs to go on after the last window it reported."""

    windows: list[WindowResult] = field(default_factory=list)
    last_weights: dict[str, torch.Tensor] = field(default_factory=dict)
    fill_tokens: int = 0


def run_rolling(config: TrialConfig, data: Prepared, device: torch.device, output_dir: Path | None,
                report: Reporter | None, resume_from: Path | None) -> TrialResult:
    """Train and score each window of `data.windows` in turn, reporting after each; the pooled result."""
    state = load_state(resume_from) or RollingState()
    history = data.train + data.valid
    tags = {Tag.PRECISION: config.precision, Tag.ENCODING_KEY: data.encoding_key, **machine_tags()}
    built = None
    for number, window in enumerate(data.windows, start=1):
        if number <= len(state.windows):  # reported before the checkpoint this trial resumed from
            continue
        seed_everything(config.seed, config.threads)  # every window starts alike, resumed or not
        part = Prepared([history[i] for i in window.train], [history[i] for i in window.valid], [], data.task,
                        data.data_digest, data.encoding_key, data.tokenizer)
        assert data.tokenizer is not None
        data.task.prepare(part.train, data.tokenizer, device)  # class weights of this window's training commits
        built = build_model(config, data, device)  # the frozen-prefix cache over every split: filled once
        tags.setdefault(Tag.FROZEN_CACHE, built.cache.note)
        tags.setdefault(Tag.MEMORY_PLAN, built.memory_plan)
        one_class = len({item.label for item in part.valid}) < 2
        with timed("rolling.window"):
            progress = train(built, part, config, device, rank=not one_class)
            metrics = best_metrics(built.model, part, config, device, progress)
        state.fill_tokens += built.cache.fill_tokens
        state.last_weights = {name: value.detach().cpu() for name, value in progress.best_state.items()}
        predictions = progress.best_predictions
        figures = pooled_metrics(data, state.windows, part, metrics, predictions) | window_figures(part, metrics,
                                                                                                 one_class)
        light = Progress(history=progress.history, train_seconds=progress.train_seconds,
                         eval_seconds=progress.eval_seconds, samples_seen=progress.samples_seen,
                         tokens_seen=progress.tokens_seen, step=progress.step)
        state.windows.append(WindowResult(metrics, predictions, figures, light))
        if report is not None:
            seconds = sum(done.progress.train_seconds + done.progress.eval_seconds for done in state.windows)
            report(Evaluation(number, progress.history[-1][EPOCH], progress.step, figures, seconds,
                              functools.partial(save_state, model=built.model, config=config, state=state),
                              last=number == len(data.windows), tags=dict(tags)))
    if built is None:  # resumed after the last window's report: its model again, from the saved weights
        built = build_model(config, data, device)
        restore(built.model, state.last_weights)
        built.model.eval()
    predictions = [prediction for done in state.windows for prediction in done.predictions]
    metrics = {name: value for name, value in state.windows[-1].figures.items() if not name.startswith(WINDOW_PREFIX)}
    metrics |= data.task.intervals(data.valid, predictions)
    if data.test:  # held out after the last window: scored by the last window's model
        metrics |= data.task.test_metrics(built.model, data.test, device, state.windows[-1].metrics)
    train_samples = sum(len(window.train) for window in data.windows)
    costs = trial_costs(built, [done.progress for done in state.windows], train_samples, config, device,
                        state.fill_tokens)
    figures = [done.figures for done in state.windows]
    result = TrialResult(metrics, costs, figures, output_dir, tags)
    if output_dir is not None:
        summary = {"metrics": metrics, "costs": costs, "history": figures, "data_digest": data.data_digest,
                   "windows": [done.progress.history for done in state.windows]}
        with timed("trial.artifacts"):
            write_trial(output_dir, built.model, config, summary, data.task, data.valid, predictions)
    return result


def pooled_metrics(data: Prepared, done: list[WindowResult], part: Prepared, metrics: dict[str, float],
                   predictions: list[Prediction]) -> dict[str, float]:
    """The task's metrics over every window so far, their predictions pooled: classification metrics of the pooled
    scores, and the evaluation loss averaged over their commits."""
    scores = [float(score) for window in done for score in window.predictions] + [float(p) for p in predictions]
    labels = [int(item.label) for item in data.valid[:len(scores)]]
    sizes = [len(window.predictions) for window in done] + [len(predictions)]
    losses = [window.metrics["eval_loss"] for window in done] + [metrics["eval_loss"]]
    loss = sum(size * value for size, value in zip(sizes, losses)) / sum(sizes)
    return classification_metrics(labels, scores) | {"eval_loss": loss}


def window_figures(part: Prepared, metrics: dict[str, float], one_class: bool) -> dict[str, float]:
    """The window's own figures: its best evaluation's metrics (only the loss, epoch and training loss when its
    commits are of one class: AUC, F1 and MCC are undefined there) and what it held and trained on."""
    kept = {name: value for name, value in metrics.items()
            if not one_class or name in ("eval_loss", EPOCH, TRAIN_LOSS)}
    counts = dict(zip(WINDOW_COUNTS, (len(part.valid), sum(int(item.label) for item in part.valid), len(part.train))))
    return {window_metric_name(name): float(value) for name, value in (kept | counts).items()}


def save_state(folder: Path, model: torch.nn.Module, config: TrialConfig, state: RollingState) -> None:
    """A checkpoint after a window: the window's model (a pruned trial's last model) and the rolling state."""
    folder.mkdir(parents=True, exist_ok=True)
    with timed("trial.checkpoint"):
        save_trained(model, config, folder / MODEL_DIR)
        torch.save({ROLLING: state}, folder / STATE_FILE)


def load_state(folder: Path | None) -> RollingState | None:
    """The rolling state a checkpoint holds; None without one."""
    path = folder / STATE_FILE if folder is not None else None
    if path is None or not path.is_file():
        return None
    return torch.load(path, weights_only=False).get(ROLLING)
