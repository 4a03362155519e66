"""The commands that read a recorded sweep: `best`, `report`, the MLflow UI and optuna-dashboard."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from sweeper.cli.common import check_server_access, quiet_downloads
from sweeper.errors import SweeperError


def cmd_best(args: argparse.Namespace) -> int:
    quiet_downloads()  # the verdict reads the runs' predictions
    from sweeper.report.budget import trials_used, trials_used_text
    from sweeper.report.verdict import sweep_verdict
    from sweeper.tracking.client import Tracker
    from sweeper.recorded.sweeps import find_sweep, ranked, trial_runs

    tracker = Tracker.connect(args.tracking_uri)
    sweep = find_sweep(tracker, args.sweep, args.experiment)
    every = trial_runs(tracker, sweep)
    trials = ranked(every, sweep.metric, sweep.mode)
    fitted = baselines(tracker, sweep)
    found = sweep_verdict(tracker, sweep)
    parent = tracker.client.get_run(sweep.run_id).data
    used = trials_used(parent.tags, parent.metrics, len(every))
    if args.json:  # the verdict, the trials used, and the trials best first, then the baselines (role: baseline)
        print(json.dumps({"verdict": found.text, "trials": used,
                          "runs": [run.as_dict(sweep.metric) for run in [*trials, *fitted]]}))
    else:
        print_ranking(trials, sweep.metric, f"sweep {sweep.sweep_id}: completed trials, best first", fitted)
        print(trials_used_text(used))
        print(f"verdict: {found.text}")
    return 0


def baselines(tracker: Any, sweep: Any) -> list[Any]:
    """The sweep's completed baselines, best first: rows beside the trials' ranking, never in it."""
    from sweeper.tracking.schema import Role
    from sweeper.recorded.sweeps import ranked, trial_runs

    return ranked(trial_runs(tracker, sweep, role=Role.BASELINE), sweep.metric, sweep.mode)


def print_ranking(trials: list[Any], metric: str, title: str, baselines: list[Any] | None = None) -> None:
    """The trials as ranked, then the baselines as rows of their own (marked, in italics), with the metric's
    bootstrap interval where the run logged one."""
    from rich.console import Console
    from rich.table import Table

    from sweeper.methods import METHODS

    table = Table(title=title)
    for column in ("run_id", "method", metric, "95% interval", "trainable_params", "key params"):
        table.add_column(column)
    for trial in trials:
        params = trial.params
        method = METHODS.get(trial.method)
        keys = ["lr", *(f"{trial.method}.{setting}" for setting in (method.shown if method else ()))]
        shown = " ".join(f"{key}={format_param(params[key])}" for key in keys if key in params)
        table.add_row(trial.run_id, trial.method, f"{trial.value(metric):.4f}", interval_text(trial, metric),
                      f"{int(trial.metrics.get('trainable_params', 0)):,}", shown)
    if baselines:
        table.add_section()
    for baseline in baselines or []:
        table.add_row(baseline.run_id, f"baseline: {baseline.method}", f"{baseline.value(metric):.4f}",
                      interval_text(baseline, metric), f"{int(baseline.metrics.get('trainable_params', 0)):,}",
                      "fitted on the trials' training split", style="italic")
    Console(width=max(Console().width, 120)).print(table)


def interval_text(run: Any, metric: str) -> str:
    """`[0.6310, 0.7930]`, or `-` for a run that logged no interval."""
    interval = run.interval(metric)
    return "-" if interval is None else f"[{interval[0]:.4f}, {interval[1]:.4f}]"


def format_param(text: str) -> str:
    """A logged param for a table: numbers to 3 significant digits."""
    try:
        return f"{float(text):.3g}"
    except ValueError:
        return text


def cmd_report(args: argparse.Namespace) -> int:
    quiet_downloads()
    from sweeper.recorded.sweeps import find_sweep
    from sweeper.report import write_report
    from sweeper.tracking.client import Tracker

    tracker = Tracker.connect(args.tracking_uri)
    sweep = find_sweep(tracker, args.sweep, args.experiment)
    written = write_report(tracker, sweep, args.out or Path(f"report-{sweep.sweep_id}"), log=not args.no_log)
    for path in written.files:
        print(path)
    if written.logged_to:
        print(f"logged to run {written.logged_to} under report/", file=sys.stderr)
    if written.partial:
        print(f"note: partial report: {written.partial}", file=sys.stderr)
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    """The UI of a tracking server is its own; for a local store, MLflow's server with one worker and without its job
    runner (queue consumers for GenAI jobs a read-only view of runs never starts), in place of this process."""
    from sweeper.tracking.client import Tracker, resolve_uri

    uri = resolve_uri(args.tracking_uri)
    if uri.startswith(("http://", "https://")):
        from sweeper.tracking.auth import shown_uri

        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a check, not a sweep: no minutes of retries
        check_server_access(uri)
        user = os.environ.get("MLFLOW_TRACKING_USERNAME")
        page = sweep_page(Tracker.connect(uri), shown_uri(uri), args.sweep)
        print(f"the tracking server at {shown_uri(uri)} serves its own UI: open {page}"
              + (f" and log in as {user}" if user else ""))
        return 0
    page = sweep_page(Tracker.connect(uri), f"http://{args.host}:{args.port}", args.sweep)
    print(f"MLflow UI for {uri}: {page} (Ctrl-C stops it)", flush=True)
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", args.host,
               "--port", str(args.port), "--workers", "1"]
    os.execve(sys.executable, command, {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    return 0  # not reached: the server replaced this process


def sweep_page(tracker: Any, base_url: str, sweep_id: str | None) -> str:
    """The UI's page of a sweep's runs (the latest sweep's by default; the UI's home when there is none)."""
    from sweeper.recorded.sweeps import find_sweep
    from sweeper.tracking.views import runs_page, sweep_view_id

    try:
        sweep = find_sweep(tracker, sweep_id)
    except SweeperError:
        if sweep_id:
            raise
        return f"{base_url.rstrip('/')}/"
    return runs_page(base_url, sweep.experiment_id, sweep_view_id(sweep.sweep_id))


def cmd_dashboard(args: argparse.Namespace) -> int:
    try:
        from optuna_dashboard import run_server
    except ImportError:
        raise SweeperError("optuna-dashboard is not installed: pip install 'sweeper[dashboard]'") from None
    import optuna

    from sweeper.tracking.client import Tracker
    from sweeper.tracking.schema import Tag
    from sweeper.recorded.sweeps import find_sweep

    tracker = Tracker.connect(args.tracking_uri)
    sweep = find_sweep(tracker, args.sweep)
    storage = args.study or tracker.client.get_run(sweep.run_id).data.tags.get(Tag.OPTUNA_STORAGE, "")
    if not storage or "***" in storage:
        raise SweeperError(f"the Optuna storage of sweep '{sweep.sweep_id}' is not logged in full: "
                           "pass it with --study URL")
    study_id = optuna.storages.get_storage(storage).get_study_id_from_name(sweep.sweep_id)
    print(f"optuna-dashboard: http://{args.host}:{args.port}/dashboard/studies/{study_id} (Ctrl-C stops it)",
          flush=True)
    run_server(storage, host=args.host, port=args.port)
    return 0
