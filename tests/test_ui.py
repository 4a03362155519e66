"""What a user lands on after a sweep: the MLflow UI (headless Chromium) on the sweep's runs table and on its run's
summary, the notes, dataset inputs and saved view behind them, `sweeper ui` and the study in optuna-dashboard.

Screenshots go to tests/artifacts/ (kept by CI): ui-sweep-runs.png (the page `sweeper ui` prints: the training-runs
table of the tiny sweep, best first) and ui-sweep-run.png (the sweep's run, its summary as the Description).
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil
import pytest
from mlflow import MlflowClient

from services import MlflowServer, free_port, stop, wait_for_http
from sweeper.cli.results import sweep_page
from sweeper.tracking.client import Tracker
from sweeper.recorded.notes import sweep_note
from sweeper.recorded.sweeps import SweepRecord, TrialRun, find_sweep
from tiny_sweep import TinySweep, tiny_sweep

ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture(scope="module")
def sweep(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> TinySweep:
    return tiny_sweep(mlflow_server.uri, tmp_path_factory.mktemp("tiny-sweep"))


def browse(url: str, screenshot: Path, profile: Path) -> str:
    """Open `url` in headless Chromium: a screenshot, and the page's DOM once its scripts have run."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    ARTIFACTS.mkdir(exist_ok=True)
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--window-size=2000,1000", "--virtual-time-budget=20000"]
    shot = subprocess.run([*flags, f"--screenshot={screenshot}", "--dump-dom", url], capture_output=True, text=True,
                          timeout=180)
    assert shot.returncode == 0 and screenshot.stat().st_size > 10_000, shot.stderr[-2000:]
    print(f"MLflow UI screenshot: {screenshot}")
    return html.unescape(shot.stdout)


@pytest.mark.slow
def test_the_sweeps_runs_page_opens_the_runs_table_with_the_trials(sweep: TinySweep, tmp_path: Path) -> None:
    url = sweep_page(Tracker.connect(sweep.uri), sweep.uri, sweep.sweep_id)  # what `sweeper ui --sweep ID` prints
    assert url == (f"{sweep.uri}/#/experiments/{sweep.experiment_id}/runs?workflowType=machine_learning"
                   f"&viewStateShareKey=sweep-{sweep.sweep_id}")
    dom = browse(url, ARTIFACTS / "ui-sweep-runs.png", tmp_path / "profile")
    names = {run.info.run_name for run in sweep.trial_runs()}
    assert len(names) == 7 and all(name in dom for name in names), "the runs table lacks trials"
    assert f"sweep {sweep.sweep_id}" in dom  # the saved view is the one open
    assert "Detect Issues" not in dom and "No data available" not in dom, "the GenAI overview opened"
    shown = dom.index  # the table ranks the completed trials best first, as the view says
    complete = sorted((run for run in sweep.trial_runs() if run.data.tags["sweeper.state"] == "complete"),
                      key=lambda run: -run.data.metrics["best_auc"])
    assert [shown(run.info.run_name) for run in complete] == sorted(shown(run.info.run_name) for run in complete)


@pytest.mark.slow
def test_the_sweeps_run_page_shows_its_summary(sweep: TinySweep, tmp_path: Path) -> None:
    url = f"{sweep.uri}/#/experiments/{sweep.experiment_id}/runs/{sweep.parent_run_id}?workflowType=machine_learning"
    dom = browse(url, ARTIFACTS / "ui-sweep-run.png", tmp_path / "profile")
    counts = sweep.summary["trials"]
    text = re.sub(r"<[^>]+>", "", dom)
    assert f"Sweep {sweep.sweep_id}: 7 trials, {counts['complete']} complete, {counts['pruned']} pruned" in text
    for method in ("full", "adapter", "lora"):  # one row per method, linking the best trial's run
        best = sweep.best_run(method)
        assert f"{best.info.run_name}" in text and f"/runs/{best.info.run_id}?workflowType=machine_learning" in dom


@pytest.mark.slow
def test_trial_notes_datasets_and_the_saved_view_match_the_runs(sweep: TinySweep, tmp_path: Path) -> None:
    client = MlflowClient(sweep.uri)
    experiment = client.get_experiment(sweep.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    view = json.loads(experiment.tags[f"mlflow.sharedViewState.sweep-{sweep.sweep_id}"])
    state = json.loads(view["state"])
    assert state["searchFilter"] == f"tags.`sweeper.sweep` = '{sweep.sweep_id}'"
    assert state["orderByKey"] == "metrics.`best_auc`" and state["orderByAsc"] is False
    assert {"params.`lr`", "params.`lora.rank`", "params.`adapter.placement`", "tags.`sweeper.state`",
            "metrics.`trainable_params`", "metrics.`train_seconds`"} <= set(state["selectedColumns"])
    for run in sweep.trial_runs():
        tags, params = run.data.tags, run.data.params
        note = tags["mlflow.note.content"]
        assert note.startswith(f"{params['method']}")
        assert float(re.search(r"lr ([^:,]+)", note).group(1)) == pytest.approx(float(params["lr"]), rel=0.01)
        if tags["sweeper.state"] == "pruned":  # pruned after its first evaluation of two
            assert note.endswith("pruned at evaluation 1 of 2")
        else:
            assert f"complete after 2 of 2 evaluations, best auc {run.data.metrics['best_auc']:.4f}" in note
        roles = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
        assert set(roles) == {"train", "validation"} and roles["train"].name == "bundled:jitdp"
    best = sweep.best_run()
    logged = Path(client.download_artifacts(best.info.run_id, "predictions.csv", str(tmp_path)))
    ids = sorted(row["id"] for row in csv.DictReader(logged.open()))  # the validation commits the trial scored
    digest = hashlib.sha256("\n".join([best.data.tags["sweeper.data_digest"], *ids]).encode()).hexdigest()[:16]
    validation = next(i.dataset for i in best.inputs.dataset_inputs if i.tags[0].value == "validation")
    assert validation.digest == digest and json.loads(validation.profile)["commits"] == len(ids)


@pytest.mark.slow
def test_dashboard_serves_the_sweeps_optuna_study(sweep: TinySweep, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "dashboard.log"
    with log.open("w") as output:
        process = subprocess.Popen([sys.executable, "-m", "sweeper.cli", "dashboard", sweep.sweep_id, "--tracking-uri",
                                    sweep.uri, "--port", str(port)], stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/api/studies", process, log, 120)
        studies = read_json(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
        study = next(study for study in studies if study["study_name"] == sweep.sweep_id)
        detail = read_json(f"http://127.0.0.1:{port}/api/studies/{study['study_id']}")
    finally:
        stop(process)
    assert f"/dashboard/studies/{study['study_id']}" in log.read_text()
    states = {int(run.data.tags["optuna.trial"]): run.data.tags["sweeper.state"] for run in sweep.trial_runs()}
    methods = {int(run.data.tags["optuna.trial"]): run.data.tags["sweeper.method"] for run in sweep.trial_runs()}
    trials = {trial["number"]: trial for trial in detail["trials"]}
    assert {number: trial["state"].lower() for number, trial in trials.items()} == states
    assert {number: next(p["param_external_value"] for p in trial["params"] if p["name"] == "method")
            for number, trial in trials.items()} == methods


def read_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


@pytest.mark.slow
def test_sweeper_ui_starts_the_server_alone_on_localhost(sweep: TinySweep, mlflow_server: MlflowServer,
                                                          tmp_path: Path) -> None:
    store = f"sqlite:///{mlflow_server.root / 'mlflow.db'}"  # the session server's store: a second, read-only UI on it
    latest = find_sweep(Tracker.connect(store))
    port, log = free_port(), tmp_path / "ui.log"
    with log.open("w") as output:
        process = subprocess.Popen([sys.executable, "-m", "sweeper.cli", "ui", "--tracking-uri", store, "--port",
                                    str(port)], stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", process, log, 240)
        # MLflow's server, where job execution is on, spawns its job runner right after the web server's process,
        # before that answers: once /health answers, whatever would run beside it is there to be counted.
        tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
        commands = [" ".join(child.cmdline()) for child in tree]
        addresses = {conn.laddr.ip for child in tree for conn in child.net_connections("inet")
                     if conn.status == psutil.CONN_LISTEN}
    finally:
        stop(process)
    print(f"sweeper ui: {len(tree)} processes: {commands}")
    assert len(tree) == 2 and not any("huey" in command or "_job_runner" in command for command in commands), commands
    assert "--workers 1" in commands[0] and addresses == {"127.0.0.1"}
    first = log.read_text().splitlines()[0]
    assert (f"http://127.0.0.1:{port}/#/experiments/{latest.experiment_id}/runs?workflowType=machine_learning"
            f"&viewStateShareKey=sweep-{latest.sweep_id}") in first


def test_sweep_note_shows_intervals_the_decision_and_the_report() -> None:
    record = SweepRecord("s-1", "parent", "4", "auc", "max")
    trials = [TrialRun("r1", "trial-000-lora", 0, "lora", "complete", {}, {
                  "best_auc": 0.71, "best_auc_ci_low": 0.62, "best_auc_ci_high": 0.8, "trainable_params": 24962,
                  "train_seconds": 3.44}),
              TrialRun("r2", "trial-001-lora", 1, "lora", "complete", {}, {"best_auc": 0.69}),
              TrialRun("r3", "trial-002-full", 2, "full", "complete", {}, {"best_auc": 0.73}),
              TrialRun("r4", "trial-003-full", 3, "full", "pruned", {}, {})]
    note = sweep_note(record, trials, ["LoRA matches full fine-tuning within its interval."], report=True)
    rows = [line for line in note.splitlines() if line.startswith("| ") and "trial-" in line]
    assert rows == [
        "| full | 0.7300 | - | [trial-002-full](#/experiments/4/runs/r3?workflowType=machine_learning) | 0 | 0.0 s |",
        "| lora | 0.7100 | 0.6200 to 0.8000 | [trial-000-lora](#/experiments/4/runs/r1?workflowType=machine_learning) "
        "| 24,962 | 3.4 s |"]
    assert "4 trials, 3 complete, 1 pruned, 0 failed, 0 killed" in note
    assert "**Decision**\n\nLoRA matches full fine-tuning within its interval." in note
    assert note.rstrip().endswith(
        "[report/report.html](#/experiments/4/runs/parent/artifacts/report/report.html?workflowType=machine_learning)")
