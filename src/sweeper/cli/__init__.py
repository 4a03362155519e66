"""The `sweeper` command: train one trial, run a sweep, rank and report it, reproduce, predict, export, register,
open the UI.

User mistakes (a bad spec, a bad data line, an unknown run) print one `error:` line and exit 2;
only bugs give a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sweeper.cli.maintenance import add_cache_command, add_check_command
from sweeper.cli.models import cmd_export, cmd_predict, cmd_register, cmd_reproduce
from sweeper.cli.results import cmd_best, cmd_dashboard, cmd_report, cmd_ui
from sweeper.cli.sweeps import cmd_logs, cmd_resume, cmd_run, cmd_status, cmd_stop, cmd_submit
from sweeper.cli.training import cmd_train
from sweeper.errors import SweeperError
from sweeper.mining.command import add_data_command


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `sweeper` console script."""
    args = parse(parser(), argv)
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


def parse(root: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The arguments; positionals after an option go to the sub-command's `trailing` list, so `predict RUN --repo
    PATH REV ...` reads as written (argparse alone takes the positionals before the first option only)."""
    args, extra = root.parse_known_args(argv)
    trailing = getattr(args, "trailing", None)
    if extra and (trailing is None or any(item.startswith("-") for item in extra)):
        root.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        getattr(args, trailing).extend(extra)
    return args


def mlflow_refusal(error: Exception, args: argparse.Namespace) -> str | None:
    """One line if `error` is an MLflow server refusing the credentials (401) or the user (403), else None."""
    if "mlflow" not in sys.modules:  # no MLflow call was made
        return None
    from sweeper.tracking.auth import refusal

    return refusal(error, getattr(args, "tracking_uri", None) or os.environ.get("MLFLOW_TRACKING_URI"))


def probability(text: str) -> float:
    """A number from 0 to 1, for --fail-above."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a probability from 0 to 1, got {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    """All sub-commands and their options."""
    root = argparse.ArgumentParser(prog="sweeper", description=" ".join(__doc__.split("\n\n")[0].split()))
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
    run.add_argument("--verbose", action="store_true", help="let Ray's own hints and warnings through too")
    run.set_defaults(command=cmd_run)

    resume = commands.add_parser("resume", parents=[tracking], help="continue an interrupted sweep")
    resume.add_argument("sweep", help="the sweep id (`sweeper best` and the MLflow UI show it)")
    resume.add_argument("--study", help="Optuna storage URL, if the logged one hides a password")
    resume.add_argument("--json", action="store_true", help="print the sweep summary as JSON at the end")
    resume.add_argument("--verbose", action="store_true", help="let Ray's own hints and warnings through too")
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

    best = commands.add_parser("best", parents=[tracking], help="rank the trials of a sweep (the latest by default) "
                                                                "and give its verdict")
    best.add_argument("sweep", nargs="?", help="sweep id (default: the latest sweep)")
    best.add_argument("--experiment", help="only sweeps of this spec name")
    best.add_argument("--json", action="store_true", help='JSON: {"verdict": ..., "trials": {budget, ran, '
                                                          'stopped}, "runs": [trials best first, then baselines]}')
    best.set_defaults(command=cmd_best)

    again = commands.add_parser("reproduce", parents=[tracking], help="re-run a trial from its logged params")
    again.add_argument("run_id", help="MLflow run id of a trial")
    again.add_argument("--json", action="store_true",
                       help="a JSON object: outcome, largest_difference, tolerance, same_machine, original, reproduced")
    again.add_argument("--tolerance", type=float, default=1e-4,
                       help="largest difference of a metric or a predicted probability accepted from a run logged on "
                            "another machine kind (default 1e-4); on the same kind the numbers must be identical")
    again.set_defaults(command=cmd_reproduce)

    report = commands.add_parser("report", parents=[tracking],
                                 help="compare the methods of a sweep: Markdown, HTML and PNG figures, logged to its run")
    report.add_argument("sweep", nargs="?", help="sweep id (default: the latest sweep)")
    report.add_argument("--out", type=Path, default=None, help="folder for the report (default: report-SWEEP_ID)")
    report.add_argument("--experiment", help="only sweeps of this spec name")
    report.add_argument("--no-log", action="store_true", help="do not log the report to the sweep's MLflow run")
    report.set_defaults(command=cmd_report)

    guess = commands.add_parser(
        "predict", parents=[tracking],
        help="defect probability (or, for a cmg run, a message) of commits (`git show`, a diff, JSONL, or --repo)",
        description="Score commits with a trial's model: from a file or standard input (`git show` output, a diff or "
                    "JSON Lines), or, with --repo, commits of a local clone by revision, their 14 change metrics "
                    "computed from its history as `sweeper data from-git` computes them.",
        epilog="Exit status: 0 when scored; 1 with --fail-above P when a commit's probability is above P (for a CI job "
               "or a git hook to act on); 2 on an error (a message on stderr). Examples: "
               "`sweeper predict RUN_ID --repo . origin/main..HEAD --fail-above 0.8`; "
               "`git show HEAD | sweeper predict models:/NAME/1 --json`.")
    guess.add_argument("run_id", help="MLflow run id of a completed trial, or models:/NAME/VERSION")
    guess.add_argument("inputs", nargs="*", metavar="FILE | REV",
                       help="input file (default: standard input); with --repo, the commits: revisions (HEAD, a sha) "
                            "and ranges (main..feature, HEAD~5..HEAD), default HEAD")
    guess.add_argument("--repo", type=Path, metavar="PATH",
                       help="a local clone (full history, not shallow): score the commits REV ... name in it")
    guess.add_argument("--json", action="store_true",
                       help='{"run_id": ..., "probability": ...} or {..., "message": ...} (a list for several); with '
                            '--repo always a list of {"commit", "probability", "threshold", "decision", "subject", '
                            '"features"}')
    guess.add_argument("--fail-above", type=probability, metavar="P",
                       help="exit with status 1 when any commit's probability is above P (0 to 1)")
    guess.set_defaults(command=cmd_predict, trailing="inputs")

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

    add_check_command(commands)
    add_cache_command(commands)
    add_data_command(commands)
    return root
