"""Chaos: a sweep on a local multi-node Ray cluster whose worker nodes are killed at random moments, again and again,
then checked for what must hold whatever was lost. `tests/test_chaos.py` runs it small; `bench/chaos.py` longer.

Each kill is SIGKILL to a whole worker node (raylet, workers, agents: a lost machine) that hosts a trial known to be
mid-run: the sweep runs with a hold point (`sweeper.sweep.hold`), so every trial waits after each evaluation that is
not its last while the chaos goes on, and each kill strikes the node of one such trial, chosen at random (seeded),
at whatever evaluation it has reached. A fresh node joins after each kill so the work can go on; the killed trial
resumes from its checkpoint there and waits again at its next hold point or ends. The chaos is sized by events, not
by the clock: the first `trials` trials are Optuna's start-up trials (never pruned) and cannot end while held, so all
`kills` happen before the sweep ends on any machine (at most `epochs - 1` kills per trial, within its retries).
Then the hold is lifted and the sweep runs to its end. The checks:

- every trial ended in a final state (complete, pruned, failed) and no run is left RUNNING;
- one MLflow run per Optuna trial, and the study's states agree with the runs' states;
- no evaluation was logged twice or lost: each run's metric history has steps 1..n, once each;
- the sweep's counts add up to the spec's number of trials.

Usage::

    outcome = run_chaos(folder, tracking_uri, trials=6, kills=3, seed=0)
    for check in outcome.checks: print(check.name, check.figure, check.ok)
"""

from __future__ import annotations

import json
import os
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
from sweeper.sweep.tuner import RETRIES
from sweeper.sweep.hold import HOLD_ENV, Held, wait_for_held

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
        head = [f"kills: {len(self.kills)} (each of a node hosting a held trial; at {at} s) in a sweep of "
                f"{self.seconds:.0f} s",
                f"trials: {self.trials}, by state {self.summary.get('trials')}, retries {self.retries}"]
        return head + [f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.figure}" for check in self.checks]


def chaos_spec(folder: Path, trials: int, epochs: int, startup: int) -> dict[str, Any]:
    """Small LoRA and adapter trials, two at a time, median pruning after `startup` trials, Ray's results in
    `folder` (every node of a local cluster sees it)."""
    return spec_dict("chaos", {"defaults.epochs": epochs, "search": {"method": {"choice": ["lora", "adapter"]},
                                                                      "lr": {"loguniform": [3.0e-4, 3.0e-3]}},
                               "sweep.trials": trials, "sweep.max_concurrent": 2,
                               "sweep.pruner": {"kind": "median", "startup_trials": startup},
                               "tracking": {"storage": str(folder / "results")}})


def startup_trials(trials: int, kills: int, epochs: int) -> int:
    """Start-up trials enough for `kills`: while the hold is on, a trial ends only after a kill at each of its
    `epochs - 1` hold points, and the pruner prunes nothing until `startup` trials have ended, so the sweep offers
    at least `startup * (epochs - 1)` kills whatever the machine's speed."""
    if not 2 <= epochs <= RETRIES + 1:
        raise ValueError(f"--epochs {epochs}: chaos needs 2 to {RETRIES + 1} (a trial is killed once at each "
                         f"evaluation but its last, and retried at most {RETRIES} times)")
    startup = max(2, -(-kills // (epochs - 1)))
    if startup > trials:
        raise ValueError(f"{kills} kills need {startup} trials of {epochs} epochs (raise --trials or --epochs)")
    return startup


def run_chaos(folder: Path, tracking_uri: str, trials: int, kills: int, seed: int = 0, epochs: int = 3,
              timeout: float = 1800) -> ChaosOutcome:
    """Run the sweep on a fresh local cluster of two worker nodes, kill `kills` nodes that host a held trial, lift
    the hold, let the sweep finish, check it."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "chaos.yaml"
    startup = startup_trials(trials, kills, epochs)
    spec.write_text(yaml.safe_dump(chaos_spec(folder, trials, epochs, startup), sort_keys=False))
    sweep_id = f"chaos-{seed}-{int(time.time())}"
    outcome = ChaosOutcome(trials)
    chooser = random.Random(seed)
    gate = folder / "hold"
    gate.touch()
    with LocalCluster.started(folder, workers=2, env={**os.environ, HOLD_ENV: str(gate)}) as cluster:
        log = folder / "sweep.log"
        command = [sys.executable, "-m", "sweeper.cli", "run", str(spec), "--tracking-uri", tracking_uri,
                   "--sweep-id", sweep_id, "--json"]
        with log.open("w") as out:
            driver = subprocess.Popen(command, cwd=folder, stdout=out, stderr=subprocess.STDOUT,
                                      env={**cluster.env, "RAY_ADDRESS": cluster.address}, start_new_session=True)
        started = time.monotonic()
        deadline = started + timeout
        try:
            while len(outcome.kills) < kills:
                victim = chooser.choice(wait_for_victims(cluster, gate, driver, log, deadline))
                cluster.kill_worker(cluster.worker_of(victim.pid))
                outcome.kills.append(time.monotonic() - started)
                print(f"  killed the node of {victim.trial} after its evaluation {victim.evaluation} at "
                      f"{outcome.kills[-1]:.0f} s", file=sys.stderr, flush=True)
                replace_node(cluster)  # a fresh machine joins, so the killed trial can resume
            gate.unlink()
            driver.wait(timeout=max(deadline - time.monotonic(), 1))
        finally:
            gate.unlink(missing_ok=True)
            if driver.poll() is None:
                driver.kill()
        outcome.seconds = time.monotonic() - started
    text = log.read_text()
    if driver.returncode != 0:
        raise RuntimeError(f"the chaos sweep ended with {driver.returncode}:\n{text[-4000:]}")
    outcome.summary = last_json_line(text)
    study = optuna.load_study(study_name=sweep_id,
                              storage=f"sqlite:///{folder / 'results' / sweep_id / 'optuna.db'}")
    runs = client_runs(MlflowClient(tracking_uri), outcome.summary["parent_run_id"])
    outcome.retries = sum(int(run.data.tags.get("sweeper.retries", "0")) for run in runs)
    outcome.checks = check_sweep(MlflowClient(tracking_uri), runs, study, outcome.summary, trials)
    return outcome


def wait_for_victims(cluster: LocalCluster, gate: Path, driver: subprocess.Popen, log: Path,
                     deadline: float) -> list[Held]:
    """The held trials on live worker nodes; waits for one, failing with the sweep's log if the sweep ends first,
    or naming the condition if none is held by `deadline`."""
    while True:
        if driver.poll() is not None:
            raise RuntimeError(f"the chaos sweep ended while the hold was on:\n{log.read_text()[-4000:]}")
        victims = [held for held in wait_for_held(gate, deadline) if cluster.worker_of(held.pid) is not None]
        if victims:
            return victims
        time.sleep(0.2)  # a note of a trial on the node just killed: its resumed self is held soon


def replace_node(cluster: LocalCluster, tries: int = 3) -> None:
    """A fresh worker node joins after a kill, so the work can go on (Ray gives a node 30 s to register, which a
    crowded machine can miss: then another try)."""
    for attempt in range(1, tries + 1):
        try:
            cluster.add_worker()
            return
        except RuntimeError as error:
            print(f"  a fresh node did not start (try {attempt} of {tries}): {str(error).splitlines()[-1]}",
                  file=sys.stderr, flush=True)
    raise RuntimeError(f"no fresh worker node started in {tries} tries: the killed trial has nowhere to resume")


def client_runs(client: MlflowClient, parent_run_id: str) -> list[Any]:
    """The sweep's trial runs (not its baselines)."""
    return client.search_runs([client.get_experiment_by_name("chaos").experiment_id],
                              f"tags.`mlflow.parentRunId` = '{parent_run_id}' and tags.`sweeper.role` = 'trial'",
                              ViewType.ALL)


def last_json_line(text: str) -> dict:
    """The summary `sweeper run --json` printed last; Ray's own log lines (a raylet's, on the same stream) may
    come after it."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"the chaos sweep printed no JSON summary:\n{text[-4000:]}")


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
