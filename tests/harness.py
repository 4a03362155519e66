"""What tests share: specs built from one base, the `sweeper` command in a subprocess, MLflow lookups, small trials.

    spec = write_spec(tmp_path, "faults", {"sweep.trials": 3, "search": {"method": {"choice": ["lora"]}}})
    out = sweeper("run", str(spec), "--tracking-uri", uri, "--json", cwd=tmp_path)
    summary = last_json(out)
    runs = trial_runs(uri, summary["parent_run_id"])
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from mlflow import MlflowClient
from mlflow.entities import ViewType

from sweeper.config import TrialConfig

REPO = Path(__file__).resolve().parent.parent
SEARCH_SPACES = REPO / "search_spaces"

# A sweep of seconds-long trials on the bundled JIT-DP sample: every spec a test writes starts from this.
BASE_SPEC: dict[str, Any] = {
    "name": "tiny",
    "task": "jitdp",
    "data": {"path": "bundled:jitdp", "sample": 120, "split": {"kind": "time", "valid": 0.3}, "max_length": 32},
    "backbone": "embedded",
    "metric": "auc",
    "defaults": {"method": "lora", "epochs": 1, "batch_size": 16, "lr": 1.0e-3, "class_weighting": True,
                 "adapter": {"bottleneck": 8}, "lora": {"rank": 4}},
    "search": {"method": {"choice": ["lora", "adapter"]}},
    "sweep": {"trials": 2, "searcher": "random", "pruner": {"kind": "none"}, "max_concurrent": 1,
              "resources": {"cpu": 1}, "seed": 0},
}

# A quick trial of each task: a few hundred bundled commits, short inputs, one epoch.
SMALL_TRIAL = {
    "jitdp": {"data.sample": 240, "data.max_length": 64, "epochs": 1, "lr": 1e-3, "adapter.bottleneck": 16,
              "lora.rank": 4},
    "cmg": {"task": "cmg", "data.path": "bundled:cmg", "data.sample": 160, "data.max_length": 64,
            "data.message_tokens": 12, "epochs": 1, "lr": 1e-3, "metric": "eval_loss", "mode": "min",
            "adapter.bottleneck": 16, "lora.rank": 4, "generation.max_new_tokens": 8},
}


def spec_dict(name: str = "tiny", changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """BASE_SPEC named `name`, with `changes` set: dotted keys (`"sweep.trials": 3`) replace one value; a key of a
    top-level section (`"search": {...}`) replaces the whole section."""
    spec = copy.deepcopy(BASE_SPEC) | {"name": name}
    for key, value in (changes or {}).items():
        *parents, leaf = key.split(".")
        node = spec
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = copy.deepcopy(value)
    return spec


def write_spec(folder: Path, name: str = "tiny", changes: dict[str, Any] | None = None) -> Path:
    """`spec_dict(name, changes)` written to `folder/NAME.yaml`; its Ray results stay in `folder`."""
    spec = spec_dict(name, changes)
    spec.setdefault("tracking", {}).setdefault("storage", str(folder / "results"))
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def sweeper(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 900,
            stdin: str | None = None) -> subprocess.CompletedProcess:
    """`python -m sweeper.cli ARGS` in a subprocess, with a Ray of its own (a short RAY_TMPDIR for Ray's sockets)."""
    ray_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    try:
        return subprocess.run([sys.executable, "-m", "sweeper.cli", *args], capture_output=True, text=True, cwd=cwd,
                              timeout=timeout, input=stdin,
                              env={**os.environ, "RAY_TMPDIR": ray_dir, **(env or {})})
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)


def last_json(out: subprocess.CompletedProcess) -> Any:
    """The JSON object a `--json` command printed last; fails with the command's output if there is none."""
    lines = out.stdout.strip().splitlines()
    assert out.returncode == 0 and lines, f"exit {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return json.loads(lines[-1])


def trial_runs(uri: str, parent_run_id: str, role: str | None = "trial") -> list:
    """A sweep's trial runs (or its `baseline` or `repeat` runs; every child run with `role=None`), deleted ones
    included, oldest first."""
    client = MlflowClient(uri)
    parent = client.get_run(parent_run_id)
    query = f"tags.`mlflow.parentRunId` = '{parent_run_id}'" + (f" and tags.`sweeper.role` = '{role}'" if role else "")
    runs = client.search_runs([parent.info.experiment_id], query, ViewType.ALL, max_results=5000)
    return sorted(runs, key=lambda run: run.info.start_time)


def small_trial(method: str = "lora", task: str = "jitdp", **overrides: Any) -> TrialConfig:
    """A quick trial of `task` (SMALL_TRIAL) with `method` and any dotted `overrides`."""
    return TrialConfig().with_overrides({**SMALL_TRIAL[task], "method": method, **overrides})
