"""The commands that run sweeps: `run` and `resume` here, `submit`, `status`, `logs` and `stop` on a Ray cluster."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeper.cli.common import check_server_access, quiet_downloads
from sweeper.cli.results import baselines, print_ranking
from sweeper.tracking.schema import SPEC_FILE, State

if TYPE_CHECKING:
    from sweeper.recorded.summary import SweepSummary


def cmd_run(args: argparse.Namespace) -> int:
    quiet_downloads()  # `sweep.register_best` downloads the best trial's model
    from sweeper.spec import load_spec

    spec = load_spec(args.spec)
    args.tracking_uri = args.tracking_uri or spec.tracking.uri  # what an error line names
    check_server_access(args.tracking_uri)  # refused credentials fail here, before Ray starts or anything trains
    from sweeper.sweep.driver import run_sweep

    signal.signal(signal.SIGTERM, interrupt)  # `sweeper stop` / `ray job stop` send SIGTERM
    quiet_ray(args.verbose)
    summary = run_sweep(spec, Path(args.spec).read_text(encoding="utf-8"), args.tracking_uri, args.sweep_id, args.spec)
    return print_outcome(summary, args.json)


def cmd_resume(args: argparse.Namespace) -> int:
    import yaml

    from sweeper.sweep.driver import run_sweep
    from sweeper.sweep.resume import recover_interrupted
    from sweeper.spec import parse_spec
    from sweeper.tracking.client import Tracker

    quiet_downloads()  # as `run`: the stop check reads the runs' predictions after each trial
    tracker = Tracker.connect(args.tracking_uri)
    spec_text, state = recover_interrupted(tracker, args.sweep, args.study)
    source = f"{SPEC_FILE} of sweep {args.sweep}"
    spec = parse_spec(yaml.safe_load(spec_text), source, spec_text)
    signal.signal(signal.SIGTERM, interrupt)
    quiet_ray(args.verbose)
    print(f"resuming {args.sweep}: {state.finished} of {spec.sweep.trials} trials had ended")
    return print_outcome(run_sweep(spec, spec_text, tracker.uri, args.sweep, source, resume=state), args.json)


def quiet_ray(verbose: bool) -> None:
    """Ray's own hints (its experiment box, "View detailed results here", TensorBoard, the token-auth notice) and
    MLflow's notes on creating a new store's tables stay out of the user's terminal unless `--verbose`: sweeper
    prints each trial's progress and where the results are."""
    if verbose:
        return
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's older reporter, which prints nothing at verbose=0
    logging.getLogger("ray").setLevel(logging.ERROR)
    for store_logger in ("mlflow.store", "alembic"):  # "Creating initial MLflow database tables...", migrations
        logging.getLogger(store_logger).setLevel(logging.WARNING)


def print_outcome(summary: SweepSummary, as_json: bool) -> int:
    """Counts, the best trial per method, and the exit code: 1 when every trial failed."""
    from sweeper.tracking.client import Tracker
    from sweeper.recorded.sweeps import best_per_method, find_sweep, ranked, trial_runs

    counts = {state: summary.count(state) for state in State.ENDED}
    repeats = ", ".join(f"{n} {state}" for state, n in summary.repeats.items())
    print(f"sweep {summary.sweep_id} done: " + ", ".join(f"{n} {state}" for state, n in counts.items())
          + (f"; repeats: {repeats}" if repeats else ""))
    tracker = Tracker.connect(summary.tracking_uri)
    sweep = find_sweep(tracker, summary.sweep_id)
    print_ranking(best_per_method(ranked(trial_runs(tracker, sweep), sweep.metric, sweep.mode)), sweep.metric,
                  "best trial per method", baselines(tracker, sweep))
    if summary.verdict:
        print(f"verdict: {summary.verdict}")
    if as_json:
        print(json.dumps(summary.as_dict()))
    if counts[State.FAILED] and counts[State.FAILED] == sum(counts.values()):
        print("error: every trial failed: see the sweeper.failure tag and error/ artifact of each run",
              file=sys.stderr)
        return 1
    return 0


def interrupt(signum: int, frame: Any) -> None:
    """Turn SIGTERM into KeyboardInterrupt, so the sweep ends its runs as KILLED on the way out."""
    raise KeyboardInterrupt


def cmd_submit(args: argparse.Namespace) -> int:
    from sweeper.sweep.jobs import submit

    from sweeper.tracking.auth import CREDENTIAL_ENV

    job_id, new = submit(args.spec, args.address, args.tracking_uri)
    print(job_id if new else f"{job_id} (already submitted: this spec's job exists)")
    held = [name for name in CREDENTIAL_ENV if os.environ.get(name)]
    if new and held:  # never sent: a job's environment is public to whoever lists jobs
        print(f"note: {' and '.join(held)} stay on this machine: the job logs to MLflow with the credentials "
              "the cluster's nodes hold", file=sys.stderr)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from sweeper.sweep.jobs import status

    print(status(args.job_id, args.address))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from sweeper.sweep.jobs import logs

    for chunk in logs(args.job_id, args.address, args.follow):
        print(chunk, end="", flush=True)
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from sweeper.sweep.jobs import stop

    print("stopping" if stop(args.job_id, args.address) else "already ended")
    return 0
