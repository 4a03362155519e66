"""Chaos: a sweep on a local multi-node Ray cluster whose worker nodes are killed at random moments, again and again,
then checked for what must hold whatever was lost. `tests/test_chaos.py` runs it small; `bench/chaos.py` longer.

Each kill is SIGKILL to a whole worker node (raylet, workers, agents: a lost machine), chosen at random among the
live ones that host a trial (among all live ones when none does), 1-8 s after the last kill's replacement joined
(or after the first trial started); a fresh node joins after each kill so the work can go on. Kills stop after `kills`, or `minutes` after the first trial started,
whichever comes first; then the sweep runs to its end. The checks:

- every trial ended in a final state (complete, pruned, failed) and no run is left RUNNING;
- one MLflow run per Optuna trial, and the study's states agree with the runs' states;
- no evaluation was logged twice or lost: each run's metric history has steps 1..n, once each;
- the sweep's counts add up to the spec's number of trials.

Usage::

    outcome = run_chaos(folder, tracking_uri, trials=6, kills=3, minutes=2.0, seed=0)
    for check in outcome.checks: print(check.name, check.figure, check.ok)
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml
from mlflow import MlflowClient
from mlflow.entities import ViewType

from harness import spec_dict
from ray_cluster import LocalCluster

# How Optuna's trial states read as sweeper's.
OPTUNA_STATES = {optuna.trial.TrialState.COMPLETE: "complete", optuna.trial.TrialState.PRUNED: "pruned",
                 optuna.trial.TrialState.FAIL: "failed"}
FINAL_STATES = ("complete", "pruned", "failed")


@dataclass(frozen=True)
class Check:
    """One property checked after the chaos: its name, the figure behind it, and whether it holds."""

    name: str
    figure: str
    ok: bool


@dataclass
class ChaosOutcome:
    """What was done (kills, seconds) and what was found (the sweep's summary, each check)."""

    trials: int
    kills: list[float] = field(default_factory=list)  # seconds after the sweep started, one per kill
    kills_busy: int = 0  # kills of a node that hosted a trial
    seconds: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)
    retries: int = 0  # restarts from a checkpoint, over every trial
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    def lines(self) -> list[str]:
        """The outcome in words: kills, trials, retries, then one line per check."""
        at = ", ".join(f"{second:.0f}" for second in self.kills)
        head = [f"kills: {len(self.kills)} ({self.kills_busy} of a node hosting a trial; at {at} s) in a sweep of "
                f"{self.seconds:.0f} s",
                f"trials: {self.trials}, by state {self.summary.get('trials')}, retries {self.retries}"]
        return head + [f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.figure}" for check in self.checks]


def chaos_spec(folder: Path, trials: int, epochs: int) -> dict[str, Any]:
    """Small LoRA and adapter trials, two at a time, median pruning, Ray's results in `folder` (every node of a
    local cluster sees it)."""
    return spec_dict("chaos", {"defaults.epochs": epochs, "search": {"method": {"choice": ["lora", "adapter"]},
                                                                      "lr": {"loguniform": [3.0e-4, 3.0e-3]}},
                               "sweep.trials": trials, "sweep.max_concurrent": 2,
                               "sweep.pruner": {"kind": "median", "startup_trials": 2},
                               "tracking": {"storage": str(folder / "results")}})


def run_chaos(folder: Path, tracking_uri: str, trials: int, kills: int, minutes: float, seed: int = 0,
              epochs: int = 3, timeout: float = 1800) -> ChaosOutcome:
    """Run the sweep on a fresh local cluster of two worker nodes, kill nodes, let it finish, check it."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "chaos.yaml"
    spec.write_text(yaml.safe_dump(chaos_spec(folder, trials, epochs), sort_keys=False))
    sweep_id = f"chaos-{seed}-{int(time.time())}"
    outcome = ChaosOutcome(trials)
    chooser = random.Random(seed)
    client = MlflowClient(tracking_uri)
    with LocalCluster.started(folder, workers=2) as cluster:
        log = folder / "sweep.log"
        command = [sys.executable, "-m", "sweeper.cli", "run", str(spec), "--tracking-uri", tracking_uri,
                   "--sweep-id", sweep_id, "--json"]
        with log.open("w") as out:
            driver = subprocess.Popen(command, cwd=folder, stdout=out, stderr=subprocess.STDOUT,
                                      env={**cluster.env, "RAY_ADDRESS": cluster.address}, start_new_session=True)
        started = time.monotonic()
        try:
            wait_until_training(client, sweep_id, driver, log, started + timeout)
            chaos = time.monotonic()
            while len(outcome.kills) < kills and time.monotonic() - chaos < minutes * 60 and driver.poll() is None:
                time.sleep(chooser.uniform(1.0, 8.0))
                if driver.poll() is not None:
                    break
                busy = cluster.busy_workers()
                cluster.kill_worker(chooser.choice(busy or cluster.workers))
                outcome.kills.append(time.monotonic() - started)
                outcome.kills_busy += bool(busy)
                print(f"  killed a worker node at {outcome.kills[-1]:.0f} s", file=sys.stderr, flush=True)
                if not replace_node(cluster):  # no fresh machine: no more kills, the sweep ends on those left
                    break
            driver.wait(timeout=max(started + timeout - time.monotonic(), 1))
        finally:
            if driver.poll() is None:
                driver.kill()
        outcome.seconds = time.monotonic() - started
    text = log.read_text()
    if driver.returncode != 0:
        raise RuntimeError(f"the chaos sweep ended with {driver.returncode}:\n{text[-4000:]}")
    outcome.summary = last_json_line(text)
    study = optuna.load_study(study_name=sweep_id,
                              storage=f"sqlite:///{folder / 'results' / sweep_id / 'optuna.db'}")
    runs = client.search_runs([client.get_experiment_by_name("chaos").experiment_id],
                              f"tags.`mlflow.parentRunId` = '{outcome.summary['parent_run_id']}' "
                              "and tags.`sweeper.role` = 'trial'", ViewType.ALL)  # not the baselines
    outcome.retries = sum(int(run.data.tags.get("sweeper.retries", "0")) for run in runs)
    outcome.checks = check_sweep(client, runs, study, outcome.summary, trials)
    return outcome


def last_json_line(text: str) -> dict:
    """The summary `sweeper run --json` printed last; Ray's own log lines (a raylet's, on the same stream) may
    come after it."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"the chaos sweep printed no JSON summary:\n{text[-4000:]}")


def replace_node(cluster: LocalCluster, tries: int = 2) -> bool:
    """A fresh worker node joins after a kill, so the work can go on; False when none would start (Ray gives a
    node 30 s to register, which a crowded machine can miss)."""
    for _ in range(tries):
        try:
            cluster.add_worker()
            return True
        except RuntimeError as error:
            print(f"  a fresh node did not start: {str(error).splitlines()[-1]}", file=sys.stderr, flush=True)
    return False


def wait_until_training(client: MlflowClient, sweep_id: str, driver: subprocess.Popen, log: Path,
                        deadline: float) -> None:
    """Block until the sweep has a trial run (the chaos starts once trials train)."""
    while time.monotonic() < deadline:
        if driver.poll() is not None:
            raise RuntimeError(f"the chaos sweep ended early:\n{log.read_text()[-4000:]}")
        experiment = client.get_experiment_by_name("chaos")
        if experiment and client.search_runs([experiment.experiment_id], f"tags.`sweeper.sweep` = '{sweep_id}' "
                                             "and tags.`sweeper.role` = 'trial'"):
            return
        time.sleep(1)
    raise RuntimeError("no trial started")


def check_sweep(client: MlflowClient, runs: list[Any], study: optuna.Study, summary: dict[str, Any],
                trials: int) -> list[Check]:
    """The properties that must hold after any number of lost nodes (see the module's docstring)."""
    states = Counter(run.data.tags.get("sweeper.state") for run in runs)
    running = [run.info.run_id for run in runs if run.info.status == "RUNNING"]
    numbers = Counter(run.data.tags.get("optuna.trial") for run in runs)
    study_numbers = {str(trial.number) for trial in study.trials}
    agree = [trial.number for trial in study.trials if trial.state in OPTUNA_STATES
             and any(run.data.tags.get("optuna.trial") == str(trial.number)
                     and run.data.tags.get("sweeper.state") == OPTUNA_STATES[trial.state] for run in runs)]
    steps_ok, evaluations = 0, 0
    for run in runs:
        steps = sorted(metric.step for metric in client.get_metric_history(run.info.run_id, "epoch"))
        evaluations += len(steps)
        steps_ok += steps == list(range(1, len(steps) + 1))
    counted = sum(summary["trials"].get(state, 0) for state in FINAL_STATES)
    return [
        Check("every trial ended in a final state", f"{sum(states[s] for s in FINAL_STATES)} of {len(runs)} runs "
              f"({dict(states)})", all(run.data.tags.get("sweeper.state") in FINAL_STATES for run in runs)),
        Check("no run RUNNING", f"{len(running)} running", not running),
        Check("one MLflow run per Optuna trial", f"{len(runs)} runs, {len(numbers)} trial numbers, "
              f"{len(study.trials)} study trials",
              set(numbers) == study_numbers and all(count == 1 for count in numbers.values())),
        Check("Optuna's states agree with MLflow's", f"{len(agree)} of {len(study.trials)} trials",
              len(agree) == len(study.trials)),
        Check("no metric step logged twice or lost", f"{steps_ok} of {len(runs)} runs have steps 1..n once each "
              f"({evaluations} evaluations)", steps_ok == len(runs)),
        Check("the counts add up to the spec's trials", f"{counted} = {trials}", counted == trials == len(runs)),
    ]
