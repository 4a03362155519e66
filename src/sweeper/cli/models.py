"""The commands that use a trained trial: `reproduce`, `predict`, `export`, `register`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

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
    from sweeper.trained.predict import decode_input, predict_text
    from sweeper.tracking.client import Tracker

    if args.file:
        if not Path(args.file).is_file():
            raise SweeperError(f"{args.file}: file not found")
        data, source = Path(args.file).read_bytes(), args.file
    else:
        data, source = sys.stdin.buffer.read(), "<stdin>"
    text, notes = decode_input(data, source)
    predictions = predict_text(Tracker.connect(args.tracking_uri), args.run_id, text, source, notes)
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
    return 0


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


