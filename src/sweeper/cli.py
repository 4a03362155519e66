"""The `sweeper` command: train one trial, run a sweep, rank and report it, reproduce, predict, export, register,
open the UI.

User mistakes (a bad spec, a bad data line, an unknown run) print one `error:` line and exit 2;
only bugs give a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from sweeper.errors import SweeperError
from sweeper.mining.command import add_data_command
from sweeper.tracking.schema import CI_HIGH, CI_LOW, SPEC_FILE, State

COSTS_SHOWN = ("trainable_params", "total_params", "trainable_percent", "train_seconds", "eval_seconds",
               "samples_per_second", "peak_memory_mb", "train_flops")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `sweeper` console script."""
    args = parser().parse_args(argv)
    try:
        return int(args.command(args) or 0)
    except SweeperError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a bug or a broken service: one line, the traceback on request
        if os.environ.get("SWEEPER_DEBUG"):
            raise
        refused = mlflow_refusal(error, args)
        if refused:  # the MLflow server refused the credentials: the user's to fix, like a SweeperError
            print(f"error: {refused}", file=sys.stderr)
            return 2
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(f"error: {args.command.__name__.removeprefix('cmd_')} broke: {type(error).__name__}: {first} "
              "(set SWEEPER_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


def mlflow_refusal(error: Exception, args: argparse.Namespace) -> str | None:
    """One line if `error` is an MLflow server refusing the credentials (401) or the user (403), else None."""
    if "mlflow" not in sys.modules:  # no MLflow call was made
        return None
    from sweeper.tracking.auth import refusal

    return refusal(error, getattr(args, "tracking_uri", None) or os.environ.get("MLFLOW_TRACKING_URI"))


def parser() -> argparse.ArgumentParser:
    """All sub-commands and their options."""
    root = argparse.ArgumentParser(prog="sweeper", description=__doc__.splitlines()[0])
    commands = root.add_subparsers(required=True, metavar="COMMAND")
    tracking = argparse.ArgumentParser(add_help=False)
    tracking.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or ./mlflow.db)")

    train = commands.add_parser("train", help="run one trial of a spec, with --set overrides")
    train.add_argument("spec", help="YAML spec file")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a trial key, e.g. --set method=lora --set lora.rank=8 --set lr=1e-4")
    train.add_argument("--out", type=Path, help="write the trained weights, config and predictions here")
    train.add_argument("--json", action="store_true", help="print one JSON object of metrics and costs")
    train.set_defaults(command=cmd_train)

    run = commands.add_parser("run", parents=[tracking], help="run a sweep on this machine (or the cluster in RAY_ADDRESS)")
    run.add_argument("spec", help="YAML spec file")
    run.add_argument("--json", action="store_true", help="print the sweep summary as JSON at the end")
    run.add_argument("--sweep-id", help="name the sweep (default: spec name and start time)")
    run.set_defaults(command=cmd_run)

    resume = commands.add_parser("resume", parents=[tracking], help="continue an interrupted sweep")
    resume.add_argument("sweep", help="the sweep id (`sweeper best` and the MLflow UI show it)")
    resume.add_argument("--study", help="Optuna storage URL, if the logged one hides a password")
    resume.add_argument("--json", action="store_true", help="print the sweep summary as JSON at the end")
    resume.set_defaults(command=cmd_resume)

    cluster = argparse.ArgumentParser(add_help=False)
    cluster.add_argument("--address", default=os.environ.get("RAY_API_SERVER_ADDRESS", "http://127.0.0.1:8265"),
                         help="the Ray dashboard of the cluster (default $RAY_API_SERVER_ADDRESS or http://127.0.0.1:8265)")
    submit = commands.add_parser("submit", parents=[tracking, cluster], help="run a sweep on a Ray cluster as a Ray job")
    submit.add_argument("spec", help="YAML spec file")
    submit.set_defaults(command=cmd_submit)
    for name, handler, text in (("status", cmd_status, "the state of a sweep job"),
                                ("logs", cmd_logs, "the output of a sweep job"),
                                ("stop", cmd_stop, "stop a sweep job (its open runs end as KILLED)")):
        job = commands.add_parser(name, parents=[cluster], help=text)
        job.add_argument("job_id", help="the submission id `sweeper submit` printed")
        if name == "logs":
            job.add_argument("--follow", "-f", action="store_true", help="stream until the job ends")
        job.set_defaults(command=handler)

    best = commands.add_parser("best", parents=[tracking], help="rank the trials of a sweep (the latest by default)")
    best.add_argument("sweep", nargs="?", help="sweep id (default: the latest sweep)")
    best.add_argument("--experiment", help="only sweeps of this spec name")
    best.add_argument("--json", action="store_true", help="a JSON list, best first")
    best.set_defaults(command=cmd_best)

    again = commands.add_parser("reproduce", parents=[tracking], help="re-run a trial from its logged params")
    again.add_argument("run_id", help="MLflow run id of a trial")
    again.add_argument("--json", action="store_true", help="a JSON object with run_id, original, reproduced")
    again.set_defaults(command=cmd_reproduce)

    report = commands.add_parser("report", parents=[tracking],
                                 help="compare the methods of a sweep: Markdown, HTML and PNG figures, logged to its run")
    report.add_argument("sweep", nargs="?", help="sweep id (default: the latest sweep)")
    report.add_argument("--out", type=Path, default=None, help="folder for the report (default: report-SWEEP_ID)")
    report.add_argument("--experiment", help="only sweeps of this spec name")
    report.add_argument("--no-log", action="store_true", help="do not log the report to the sweep's MLflow run")
    report.set_defaults(command=cmd_report)

    guess = commands.add_parser("predict", parents=[tracking],
                                help="defect probability (or, for a cmg run, a message) of commits (`git show`, a diff or JSONL)")
    guess.add_argument("run_id", help="MLflow run id of a completed trial, or models:/NAME/VERSION")
    guess.add_argument("file", nargs="?", help="input file (default: standard input)")
    guess.add_argument("--json", action="store_true", help='{"run_id": ..., "probability": ...} or {..., "message": ...} (a list for several)')
    guess.set_defaults(command=cmd_predict)

    export = commands.add_parser("export", parents=[tracking], help="write a trial's model as a standalone folder")
    export.add_argument("run_id", help="MLflow run id of a completed trial, or models:/NAME/VERSION")
    export.add_argument("dir", type=Path, help="new folder to write")
    export.add_argument("--merge", action="store_true",
                        help="LoRA/IA3: merge into full weights loadable with AutoModelForSequenceClassification")
    export.set_defaults(command=cmd_export)

    register = commands.add_parser("register", parents=[tracking],
                                   help="put a trial's model in MLflow's Model Registry (prints models:/NAME/VERSION)")
    register.add_argument("run_id", help="MLflow run id of a completed trial")
    register.add_argument("--name", help="registered model name (default: the trial's experiment, the spec's name)")
    register.set_defaults(command=cmd_register)

    ui = commands.add_parser("ui", parents=[tracking], help="start the MLflow UI on the sweep store")
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default: localhost only)")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--sweep", help="the sweep whose runs page to print (default: the latest)")
    ui.set_defaults(command=cmd_ui)

    dashboard = commands.add_parser("dashboard", parents=[tracking],
                                    help="open a sweep's Optuna study in optuna-dashboard")
    dashboard.add_argument("sweep", nargs="?", help="sweep id (default: the latest sweep)")
    dashboard.add_argument("--study", help="Optuna storage URL, if the logged one hides a password")
    dashboard.add_argument("--host", default="127.0.0.1", help="address to bind (default: localhost only)")
    dashboard.add_argument("--port", type=int, default=8080)
    dashboard.set_defaults(command=cmd_dashboard)
    add_data_command(commands)
    return root


def cmd_train(args: argparse.Namespace) -> int:
    from sweeper.baselines import baselines_for
    from sweeper.data.records import read_records
    from sweeper.spec import load_spec, parse_overrides
    from sweeper.tasks import task_class
    from sweeper.trial import run_trial

    spec = load_spec(args.spec)
    config = spec.trial(parse_overrides(args.overrides), "--set")
    task = task_class(config.task)
    if not args.json:
        print(f"training {config.method} on {config.data.path} with backbone {config.backbone}", file=sys.stderr)
    shown = [*task.shown, *task.lower_is_better]
    dataset = read_records(config.data.path, config.task, config.data.skip_bad)  # once, for the trial and baselines
    result = run_trial(config, args.out, report=None if args.json else lambda e: print_evaluation(e, shown),
                       dataset=dataset)
    baselines = baselines_for(config, spec.baseline_names(), dataset)  # on the trial's own split
    if args.json:
        figures = {b.name: baseline_figures(b) for b in baselines}
        print(json.dumps({**result.metrics, **result.costs, "baselines": figures}))
        return 0
    metrics = [*task.metrics, *task.generated_metrics]
    print_pairs("metrics (best evaluation)", {key: result.metrics[key] for key in metrics if key in result.metrics})
    print_pairs("costs", {key: result.costs[key] for key in COSTS_SHOWN if key in result.costs})
    if baselines:
        print_beside(f"{config.method} (trial)", result.metrics, result.costs["train_seconds"], baselines, task.shown)
    if args.out:
        print(f"artifacts: {args.out}")
    return 0


def baseline_figures(baseline: Any) -> dict[str, Any]:
    """A baseline for `train --json`: validation metrics with intervals, test metrics as `test_*`, its cost."""
    if baseline.skipped:
        return {"skipped": baseline.skipped, "description": baseline.description}
    test = {f"test_{name}": value for name, value in baseline.metrics.get("test", {}).items()}
    return {**baseline.metrics["valid"], **test, "fit_seconds": baseline.fit_seconds,
            "parameters": baseline.parameters, "description": baseline.description}


def print_beside(trial: str, metrics: dict[str, float], seconds: float, baselines: list[Any],
                 shown: tuple[str, ...]) -> None:
    """The trial and the baselines on its validation split: each shown metric with its 95 % interval, and seconds
    (training for the trial, fitting for a baseline)."""
    def cell(values: dict[str, float], name: str) -> str:
        low, high = values.get(f"{name}{CI_LOW}"), values.get(f"{name}{CI_HIGH}")
        interval = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
        return f"{values[name]:.3f}{interval}"

    print("the trial beside the baselines (validation split; 95 % bootstrap intervals)")
    print(f"  {'model':18}" + "".join(f"{name:24}" for name in shown) + "seconds")
    print(f"  {trial:18}" + "".join(f"{cell(metrics, name):24}" for name in shown) + f"{seconds:.1f}")
    for baseline in baselines:
        if baseline.skipped:
            print(f"  {baseline.name:18}skipped: {baseline.skipped}")
            continue
        valid = baseline.metrics["valid"]
        print(f"  {baseline.name:18}" + "".join(f"{cell(valid, name):24}" for name in shown)
              + f"{baseline.fit_seconds:.3f}")


def print_evaluation(evaluation: Any, shown: list[str]) -> None:
    values = " ".join(f"{key}={evaluation.metrics[key]:.4f}" for key in shown if key in evaluation.metrics)
    print(f"  epoch {evaluation.epoch:g}: {values}", file=sys.stderr, flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    quiet_downloads()  # `sweep.register_best` downloads the best trial's model
    from sweeper.spec import load_spec

    spec = load_spec(args.spec)
    args.tracking_uri = args.tracking_uri or spec.tracking.uri  # what an error line names
    check_server_access(args.tracking_uri)  # refused credentials fail here, before Ray starts or anything trains
    from sweeper.sweep.driver import run_sweep

    signal.signal(signal.SIGTERM, interrupt)  # `sweeper stop` / `ray job stop` send SIGTERM
    summary = run_sweep(spec, Path(args.spec).read_text(encoding="utf-8"), args.tracking_uri, args.sweep_id, args.spec)
    return print_outcome(summary, args.json)


def cmd_resume(args: argparse.Namespace) -> int:
    import yaml

    from sweeper.sweep.driver import recover_interrupted, run_sweep
    from sweeper.spec import parse_spec
    from sweeper.tracking.client import Tracker

    tracker = Tracker.connect(args.tracking_uri)
    spec_text, state = recover_interrupted(tracker, args.sweep, args.study)
    source = f"{SPEC_FILE} of sweep {args.sweep}"
    spec = parse_spec(yaml.safe_load(spec_text), source, spec_text)
    signal.signal(signal.SIGTERM, interrupt)
    print(f"resuming {args.sweep}: {state.finished} of {spec.sweep.trials} trials had ended")
    return print_outcome(run_sweep(spec, spec_text, tracker.uri, args.sweep, source, resume=state), args.json)


def print_outcome(summary: Any, as_json: bool) -> int:
    """Counts, the best trial per method, and the exit code: 1 when every trial failed."""
    from sweeper.sweep.driver import summary_as_dict
    from sweeper.tracking.client import Tracker
    from sweeper.tracking.sweeps import best_per_method, find_sweep, ranked, trial_runs

    counts = {state: summary.count(state) for state in State.ENDED}
    repeats = ", ".join(f"{n} {state}" for state, n in summary.repeats.items())
    print(f"sweep {summary.sweep_id} done: " + ", ".join(f"{n} {state}" for state, n in counts.items())
          + (f"; repeats: {repeats}" if repeats else ""))
    tracker = Tracker.connect(summary.tracking_uri)
    sweep = find_sweep(tracker, summary.sweep_id)
    print_ranking(best_per_method(ranked(trial_runs(tracker, sweep), sweep.metric, sweep.mode)), sweep.metric,
                  "best trial per method", baselines(tracker, sweep))
    if as_json:
        print(json.dumps(summary_as_dict(summary)))
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


def cmd_best(args: argparse.Namespace) -> int:
    from sweeper.tracking.client import Tracker
    from sweeper.tracking.sweeps import find_sweep, ranked, trial_runs

    tracker = Tracker.connect(args.tracking_uri)
    sweep = find_sweep(tracker, args.sweep, args.experiment)
    trials = ranked(trial_runs(tracker, sweep), sweep.metric, sweep.mode)
    fitted = baselines(tracker, sweep)
    if args.json:  # the trials best first, then the baselines (role: baseline)
        print(json.dumps([run.as_dict(sweep.metric) for run in [*trials, *fitted]]))
    else:
        print_ranking(trials, sweep.metric, f"sweep {sweep.sweep_id}: completed trials, best first", fitted)
    return 0


def baselines(tracker: Any, sweep: Any) -> list[Any]:
    """The sweep's completed baselines, best first: rows beside the trials' ranking, never in it."""
    from sweeper.tracking.schema import Role
    from sweeper.tracking.sweeps import ranked, trial_runs

    return ranked(trial_runs(tracker, sweep, role=Role.BASELINE), sweep.metric, sweep.mode)


def cmd_reproduce(args: argparse.Namespace) -> int:
    from sweeper.trained.reproduce import reproduce
    from sweeper.tracking.client import Tracker

    outcome = reproduce(Tracker.connect(args.tracking_uri), args.run_id)
    if args.json:
        print(json.dumps({"run_id": outcome.run_id, "original": outcome.original, "reproduced": outcome.reproduced,
                          "predictions": outcome.predictions, "predictions_differing": outcome.predictions_differing}))
    else:
        print(f"{'metric':24} {'original':>22} {'reproduced':>22}")
        for name, value in outcome.original.items():
            print(f"{name:24} {value!r:>22} {outcome.reproduced.get(name)!r:>22}")
        if outcome.predictions_differing is not None:
            print(f"validation predictions: {outcome.predictions - outcome.predictions_differing} of "
                  f"{outcome.predictions} identical")
        print("identical" if not outcome.mismatches() else f"differ: {', '.join(outcome.mismatches())}")
    return 0 if not outcome.mismatches() else 1


def cmd_report(args: argparse.Namespace) -> int:
    quiet_downloads()
    from sweeper.tracking.sweeps import find_sweep
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
    from sweeper.tracking.sweeps import find_sweep
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
    from sweeper.tracking.sweeps import find_sweep

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


def check_server_access(uri: str | None) -> None:
    """One read request to an MLflow server (http/https URIs only): refused credentials raise here, and `main`
    turns that into one error line."""
    from sweeper.tracking.client import resolve_uri

    resolved = resolve_uri(uri)
    if resolved.startswith(("http://", "https://")):
        from mlflow import MlflowClient

        MlflowClient(resolved).search_experiments(max_results=1)


def quiet_downloads() -> None:
    """No MLflow download progress bars on the terminal: the commands print their own results."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def print_pairs(title: str, values: dict[str, float]) -> None:
    print(title)
    for key, value in values.items():
        print(f"  {key:22} {value:.6g}")


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


if __name__ == "__main__":
    sys.exit(main())
