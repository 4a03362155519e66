"""The commands that use a trained trial: `reproduce`, `predict`, `export`, `register`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sweeper.cli.common import quiet_downloads
from sweeper.errors import SweeperError


def cmd_reproduce(args: argparse.Namespace) -> int:
    from sweeper.trained.reproduce import DIFFER, reproduce
    from sweeper.tracking.client import Tracker

    outcome = reproduce(Tracker.connect(args.tracking_uri), args.run_id)
    if args.json:
        print(json.dumps(outcome.as_json(args.tolerance)))
    else:
        print(f"{'metric':24} {'original':>22} {'reproduced':>22}")
        for name, value in outcome.original.items():
            print(f"{name:24} {value!r:>22} {outcome.reproduced.get(name)!r:>22}")
        if outcome.predictions_differing is not None:
            print(f"validation predictions: {outcome.predictions - outcome.predictions_differing} of "
                  f"{outcome.predictions} identical")
        print(outcome.summary(args.tolerance))
    return 1 if outcome.outcome(args.tolerance) == DIFFER else 0


def cmd_predict(args: argparse.Namespace) -> int:
    quiet_downloads()
    from sweeper.tracking.client import Tracker

    tracker = Tracker.connect(args.tracking_uri)
    if args.repo is not None:
        return predict_commits(args, tracker)
    from sweeper.trained.predict import decode_input, predict_text

    if len(args.inputs) > 1:
        raise SweeperError(f"one input file at a time, got {len(args.inputs)} (to score commits of a clone by "
                           "revision, add --repo PATH)")
    file = args.inputs[0] if args.inputs else None
    if file:
        if not Path(file).is_file():
            raise SweeperError(f"{file}: file not found")
        data, source = Path(file).read_bytes(), file
    else:
        data, source = sys.stdin.buffer.read(), "<stdin>"
    text, notes = decode_input(data, source)
    predictions = predict_text(tracker, args.run_id, text, source, notes)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    shown = [p.message if p.message is not None else f"{p.probability:.6f}" for p in predictions]
    if args.json:
        rows = [{"run_id": args.run_id, "id": p.id, **({"message": p.message} if p.message is not None
                                                       else {"probability": p.probability})} for p in predictions]
        print(json.dumps(rows[0] if len(rows) == 1 else rows))
    elif len(predictions) == 1:
        print(shown[0])
    else:
        for prediction, text in zip(predictions, shown):
            print(f"{prediction.id}\t{text}")
    return verdict(predictions, args.fail_above)


def predict_commits(args: argparse.Namespace, tracker: Any) -> int:
    """`predict --repo`: one line per commit (sha, probability, decision, subject), or a JSON list."""
    from sweeper.trained.predict import THRESHOLD_METRIC, predict_repo

    notes: list[str] = []
    predictions, records = predict_repo(tracker, args.run_id, args.repo, args.inputs or ["HEAD"], notes)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps([{"run_id": args.run_id, "commit": p.id, "probability": p.probability,
                           "threshold": p.threshold, "decision": p.decision,
                           "subject": r.message.split("\n", 1)[0], "features": r.features}
                          for p, r in zip(predictions, records)]))
    else:
        if predictions and predictions[0].threshold is not None:
            print(f"threshold {predictions[0].threshold:.6f} (the run's {THRESHOLD_METRIC}): at or above it a "
                  "commit is called defect-inducing", file=sys.stderr)
        for p, r in zip(predictions, records):
            cells = [p.id[:12], f"{p.probability:.6f}", *([p.decision] if p.decision else []),
                     r.message.split("\n", 1)[0]]
            print("\t".join(cells))
    return verdict(predictions, args.fail_above)


def verdict(predictions: list[Any], fail_above: float | None) -> int:
    """The exit status: 1 when `--fail-above P` is given and a commit's probability is above P, else 0."""
    if fail_above is None:
        return 0
    if any(p.probability is None for p in predictions):
        raise SweeperError("--fail-above compares defect probabilities: this run generates commit messages")
    above = [p for p in predictions if p.probability is not None and p.probability > fail_above]
    if above:
        print(f"{len(above)} of {len(predictions)} commits above {fail_above:g}: "
              f"{', '.join(p.id[:12] for p in above)}", file=sys.stderr)
    return 1 if above else 0


def cmd_export(args: argparse.Namespace) -> int:
    quiet_downloads()
    from sweeper.trained.export import export_run
    from sweeper.tracking.client import Tracker

    manifest = export_run(Tracker.connect(args.tracking_uri), args.run_id, args.dir, args.merge)
    print(f"exported run {args.run_id} to {args.dir} (see {manifest.name})")
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    quiet_downloads()
    from sweeper.trained.register import register_run
    from sweeper.tracking.client import Tracker

    tracker = Tracker.connect(args.tracking_uri)
    name = args.name or tracker.client.get_experiment(tracker.trial_run(args.run_id).info.experiment_id).name
    version = register_run(tracker, args.run_id, name)
    print(f"registered run {args.run_id} as version {version.version} of model '{name}'", file=sys.stderr)
    print(f"models:/{name}/{version.version}")
    return 0


