"""A tiny real sweep run once per test session against the MLflow server, shared by test_report.py,
test_predict.py, test_ui.py and test_register.py: 7 trials, one at a time so pruning repeats. Random search with seed 5 picks adapter (parallel),
full, adapter (ffn), lora (rank 4) for the 4 trials that complete before pruning starts, then lora, full, adapter.
Its best trial is registered as version 1 of the model `tiny-report` at its end (`sweep.register_best`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import ViewType

SPEC = """\
name: tiny-report
task: jitdp
data: {path: bundled:jitdp, sample: 200, split: {kind: time, valid: 0.3}, max_length: 64}
backbone: embedded
metric: auc
defaults: {epochs: 2, batch_size: 16, class_weighting: true, adapter: {bottleneck: 16}}
search:
  method: {choice: [full, adapter, lora]}
  lr: {loguniform: [3.0e-4, 3.0e-3]}
  lora.rank: {choice: [4, 8], when: {method: lora}}
  adapter.placement: {choice: [ffn, parallel], when: {method: adapter}}
sweep:
  trials: 7
  searcher: random
  pruner: {kind: median, startup_trials: 4, warmup_steps: 0}
  max_concurrent: 1
  resources: {cpu: 1}
  seed: 5
  register_best: true
tracking: {storage: STORAGE}
"""


@dataclass(frozen=True)
class TinySweep:
    """Where the sweep is recorded, what `sweeper run --json` printed, and its trial runs."""

    uri: str
    workdir: Path
    summary: dict
    experiment_id: str

    @property
    def sweep_id(self) -> str:
        return self.summary["sweep_id"]

    @property
    def parent_run_id(self) -> str:
        return self.summary["parent_run_id"]

    def trial_runs(self) -> list:
        query = f"tags.`mlflow.parentRunId` = '{self.parent_run_id}'"
        return list(MlflowClient(self.uri).search_runs([self.experiment_id], query, ViewType.ALL))

    def best_run(self, method: str | None = None):
        """The completed trial with the highest best_auc, of one method if given."""
        runs = [run for run in self.trial_runs() if run.data.tags["sweeper.state"] == "complete"
                and (method is None or run.data.tags["sweeper.method"] == method)]
        return max(runs, key=lambda run: run.data.metrics["best_auc"]) if runs else None


_sweeps: dict[str, TinySweep] = {}


def sweeper(*args: str, cwd: Path, timeout: float = 900, stdin: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m sweeper.cli ARGS` in a subprocess."""
    return subprocess.run([sys.executable, "-m", "sweeper.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, input=stdin, env={**os.environ, **(env or {})})


def tiny_sweep(uri: str, workdir: Path) -> TinySweep:
    """Run the tiny sweep against `uri` once per session (later calls get the same sweep)."""
    if uri in _sweeps:
        return _sweeps[uri]
    spec = workdir / "tiny.yaml"
    spec.write_text(SPEC.replace("STORAGE", str(workdir / "results")))
    ray_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # a Ray of its own, short enough for Ray's socket paths
    try:
        out = sweeper("run", str(spec), "--tracking-uri", uri, "--json", cwd=workdir, env={"RAY_TMPDIR": ray_dir})
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    experiment = MlflowClient(uri).get_experiment_by_name("tiny-report")
    _sweeps[uri] = TinySweep(uri, workdir, summary, experiment.experiment_id)
    print(f"tiny sweep {summary['sweep_id']}: {summary['trials']}")
    return _sweeps[uri]
