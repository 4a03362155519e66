"""What tests share: specs built from one base, the `sweeper` command in a subprocess, MLflow lookups, small trials.

    spec = write_spec(tmp_path, "faults", {"sweep.trials": 3, "search": {"method": {"choice": ["lora"]}}})
    out = sweeper("run", str(spec), "--tracking-uri", uri, "--json", cwd=tmp_path)
    summary = last_json(out)
    runs = trial_runs(uri, summary["parent_run_id"])
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import yaml
from mlflow import MlflowClient
from mlflow.entities import ViewType

from ray_cluster import LocalCluster
from sweeper.config import TrialConfig
from sweeper.data.records import read_bytes
from sweeper.tracking.schema import Role, Tag

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

# The changes that make BASE_SPEC a commit message generation sweep: the bundled CMG sample, short messages.
CMG: dict[str, Any] = {
    "task": "cmg",
    "data": {"path": "bundled:cmg", "sample": 120, "split": {"kind": "time", "valid": 0.25}, "max_length": 64,
             "message_tokens": 12},
    "metric": "eval_loss",
    "mode": "min",
    "defaults.generation": {"max_new_tokens": 8},
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
    """BASE_SPEC named `name`, with `changes` set: dotted keys (`"sweep.trials": 3`) replace one value, None removes
    it; a key of a top-level section (`"search": {...}`) replaces the whole section."""
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
    """`spec_dict(name, changes)` written to `folder/NAME.yaml`; its Ray results stay in `folder/results` unless
    `changes` say where."""
    spec = spec_dict(name, changes)
    spec.setdefault("tracking", {}).setdefault("storage", str(folder / "results"))
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


# What a trial in a Ray worker reads from its environment: a worker gets its node's environment, not the driver's.
WORKER_ENVIRONMENT = ("SWEEPER_", "PYTHONPATH", "HF_", "TRANSFORMERS_", "OMP_NUM_THREADS")
# This process's environment before any test changed it: the shared Ray's nodes start with it.
SESSION_ENVIRONMENT = dict(os.environ)


def worker_environment(environment: Mapping[str, str]) -> dict[str, str]:
    return {key: value for key, value in environment.items() if key.startswith(WORKER_ENVIRONMENT)}


class SharedRay:
    """One Ray head (two CPUs, token auth) that the `sweeper` commands of a test session join, started at first use:
    joining costs a driver under a second where starting an embedded Ray costs it about ten."""

    cluster: LocalCluster | None = None

    @classmethod
    def environment(cls) -> dict[str, str]:
        """What a command needs to join it: its address and token."""
        if cls.cluster is None:
            cluster = LocalCluster.create(Path(tempfile.mkdtemp(prefix="shared-ray-")), SESSION_ENVIRONMENT)
            cluster.start_head(cpus=2)
            cls.cluster = cluster
        return {key: cls.cluster.env[key] for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")} | {
            "RAY_ADDRESS": cls.cluster.address}

    @classmethod
    def stop(cls) -> None:
        if cls.cluster is not None:
            cls.cluster.stop()
            shutil.rmtree(cls.cluster.folder, ignore_errors=True)
            cls.cluster = None


@contextmanager
def cli_environment(env: Mapping[str, str] | None, inherit: bool) -> Iterator[dict[str, str]]:
    """The environment of a `sweeper` subprocess: this process's plus `env` (or `env` alone without `inherit`).

    A command that names no Ray (no RAY_ADDRESS or RAY_TMPDIR in `env`) joins the session's shared Ray when its
    workers would see the same environment there (`WORKER_ENVIRONMENT` as the session began); otherwise it gets a
    private RAY_TMPDIR, short enough for Ray's socket paths, so that its embedded Ray never joins another one."""
    environment = {**(os.environ if inherit else {}), **(env or {})}
    if environment.get("RAY_ADDRESS") or "RAY_TMPDIR" in (env or {}):  # a cluster, or a Ray folder the caller reads
        yield environment
        return
    environment.pop("RAY_ADDRESS", None)
    if inherit and worker_environment(environment) == worker_environment(SESSION_ENVIRONMENT):
        yield environment | SharedRay.environment()
        return
    ray_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    try:
        yield environment | {"RAY_TMPDIR": ray_dir}
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)


def sweeper(*args: str, cwd: Path, env: Mapping[str, str] | None = None, inherit: bool = True,
            timeout: float = 900, stdin: str | None = None) -> subprocess.CompletedProcess:
    """`python -m sweeper.cli ARGS` in a subprocess, its environment from `cli_environment(env, inherit)`."""
    with cli_environment(env, inherit) as environment:
        return subprocess.run([sys.executable, "-m", "sweeper.cli", *args], capture_output=True, text=True, cwd=cwd,
                              timeout=timeout, input=stdin, env=environment)


@contextmanager
def sweeper_process(*args: str, cwd: Path, stdout: IO[Any] | int, env: Mapping[str, str] | None = None
                    ) -> Iterator[subprocess.Popen]:
    """`python -m sweeper.cli ARGS` started in the background, in a process group of its own (so a test can kill it
    with its Ray, `os.killpg`), with stderr into `stdout`; killed with its group if still running at the end."""
    with cli_environment(env, True) as environment:
        process = subprocess.Popen([sys.executable, "-m", "sweeper.cli", *args], cwd=cwd, env=environment, text=True,
                                   stdout=stdout, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield process
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def last_json(out: subprocess.CompletedProcess) -> Any:
    """The JSON object a `--json` command printed last; fails with the command's output if there is none."""
    lines = out.stdout.strip().splitlines()
    assert out.returncode == 0 and lines, f"exit {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return json.loads(lines[-1])


def trial_runs(uri: str, parent_run_id: str | None = None, role: str | None = Role.TRIAL, *,
               experiment: str | None = None) -> list:
    """The trial runs (or the runs of another `role`; every run with None) of a sweep, by its parent run, or of an
    experiment (none while it does not exist yet); deleted and unfinished ones included, oldest first."""
    client = MlflowClient(uri)
    if parent_run_id is not None:
        experiment_id = client.get_run(parent_run_id).info.experiment_id
        query = [f"tags.`{Tag.PARENT_RUN}` = '{parent_run_id}'"]
    else:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            return []
        experiment_id, query = found.experiment_id, []
    query += [f"tags.`{Tag.ROLE}` = '{role}'"] if role else []
    runs = client.search_runs([experiment_id], " and ".join(query), ViewType.ALL, max_results=5000)
    return sorted(runs, key=lambda run: run.info.start_time)


def fresh_cache(folder: Path) -> Path:
    """An empty `$SWEEPER_CACHE` folder for encoded data and frozen-layer states that still holds the embedded
    backbones (links to the ones built once in the real cache): set it with `SWEEPER_CACHE`."""
    from sweeper.backbone import embedded_backbone_dir, embedded_seq2seq_dir

    folder.mkdir(parents=True, exist_ok=True)
    for built in (embedded_backbone_dir(), embedded_seq2seq_dir()):
        (folder / built.name).symlink_to(built)
    return folder


def markdown_table(markdown: str, section: str) -> list[dict[str, str]]:
    """The first table under `## section` of a Markdown document (a report), as dicts keyed by header."""
    body = markdown.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in body.splitlines() if line.startswith("|")]
    headers = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [dict(zip(headers, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[2:]]


def data_lines(path: str) -> list[str]:
    """The JSON lines of a data file or a bundled sample (`bundled:cmg`), gzip or plain, as sweeper reads them."""
    data = read_bytes(path)
    text = (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).decode()
    return [line for line in text.splitlines() if line.strip()]


def predict_in_fresh_process(folder: Path) -> list:
    """`sweeper.recipe.predict_saved(folder)` in a new Python process: a trial folder reloaded with nothing cached."""
    script = ("import json, sys; from pathlib import Path; from sweeper.recipe import predict_saved; "
              "print(json.dumps(predict_saved(Path(sys.argv[1]))))")
    out = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def small_trial(method: str = "lora", task: str = "jitdp", **overrides: Any) -> TrialConfig:
    """A quick trial of `task` (SMALL_TRIAL) with `method` and any dotted `overrides`."""
    return TrialConfig().with_overrides({**SMALL_TRIAL[task], "method": method, **overrides})
