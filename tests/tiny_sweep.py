"""A tiny real sweep run once per test session against the MLflow server, shared by test_report.py,
test_predict.py, test_ui.py and test_register.py: 7 trials, one at a time so pruning repeats. Random search with seed 5
picks adapter (parallel), full, adapter (ffn), lora (rank 4) for the 4 trials that complete before pruning starts, then
lora, full, adapter. Its best trial is registered as version 1 of the model `tiny-report` at its end
(`sweep.register_best`). Beside the trials: the two JIT-DP baselines (on by default) and one repeat (seed 1) of each
method's best trial (`sweep.repeats`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient

from harness import last_json, sweeper, trial_runs, write_spec

CHANGES = {
    "data.sample": 200, "data.max_length": 64,
    "defaults": {"epochs": 2, "batch_size": 16, "class_weighting": True, "adapter": {"bottleneck": 16}},
    "search": {"method": {"choice": ["full", "adapter", "lora"]}, "lr": {"loguniform": [3.0e-4, 3.0e-3]},
               "lora.rank": {"choice": [4, 8], "when": {"method": "lora"}},
               "adapter.placement": {"choice": ["ffn", "parallel"], "when": {"method": "adapter"}}},
    "sweep.trials": 7, "sweep.pruner": {"kind": "median", "startup_trials": 4, "warmup_steps": 0}, "sweep.seed": 5,
    "sweep.register_best": True, "sweep.repeats": 1,
}


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

    def trial_runs(self, role: str | None = "trial") -> list:
        """The sweep's child runs of one role: its trials, its `baseline` or `repeat` runs, or all with None."""
        return trial_runs(self.uri, self.parent_run_id, role)

    def best_run(self, method: str | None = None):
        """The completed trial with the highest best_auc, of one method if given."""
        runs = [run for run in self.trial_runs() if run.data.tags["sweeper.state"] == "complete"
                and (method is None or run.data.tags["sweeper.method"] == method)]
        return max(runs, key=lambda run: run.data.metrics["best_auc"]) if runs else None


_sweeps: dict[str, TinySweep] = {}


def tiny_sweep(uri: str, workdir: Path) -> TinySweep:
    """Run the tiny sweep against `uri` once per session (later calls get the same sweep)."""
    if uri in _sweeps:
        return _sweeps[uri]
    spec = write_spec(workdir, "tiny-report", CHANGES)
    summary = last_json(sweeper("run", str(spec), "--tracking-uri", uri, "--json", cwd=workdir))
    experiment = MlflowClient(uri).get_experiment_by_name("tiny-report")
    _sweeps[uri] = TinySweep(uri, workdir, summary, experiment.experiment_id)
    print(f"tiny sweep {summary['sweep_id']}: {summary['trials']}")
    return _sweeps[uri]
