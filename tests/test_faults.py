"""Failing trials: a failure the trial raises itself ends it FAILED at once, without a retry; a lost worker is
retried from the checkpoint and the trial ends exactly as if it had never stopped; the exit code tells the story."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from harness import small_trial, sweeper, sweeper_process, trial_runs, write_spec
from services import MlflowServer
from sweeper.artifacts import CONFIG_FILE, PREDICTIONS_FILE
from sweeper.config import TrialConfig
from sweeper.sweep.hold import HOLD_ENV, wait_for_held
from sweeper.tracking.schema import final_metric_name
from sweeper.recipe import TrialFailed
from sweeper.trial import run_trial

GOOD = "bundled:jitdp"
TINY = {"data.sample": 120, "data.max_length": 32, "lr": 1e-4}


def test_nan_loss_fails_the_trial_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", lambda self, logits, labels: logits.sum() * float("nan"))
    with pytest.raises(TrialFailed, match=r"loss is nan at step 1 \(lr 0.0001 may be too high\)"):
        run_trial(small_trial("lora", **TINY))


def test_out_of_memory_fails_the_trial_with_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_memory(self: torch.nn.Module, *args: object, **kwargs: object) -> None:
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
    monkeypatch.setattr(torch.nn.Embedding, "forward", no_memory)
    with pytest.raises(TrialFailed, match="out of memory at batch_size 16, max_length 32: lower one of them"):
        run_trial(small_trial("lora", **TINY))


@dataclass(frozen=True)
class FaultySweep:
    """A finished sweep of three trials (good data, a bad line, a missing file) whose good trial lost its worker."""

    uri: str
    folder: Path
    summary: dict
    killed_pid: int
    ray_results: list[dict]  # every line of every trial's result.json, as Ray's driver wrote them

    def runs(self) -> dict[str, object]:
        return {run.data.params["data.path"]: run for run in trial_runs(self.uri, self.summary["parent_run_id"])}


def bad_data(folder: Path) -> Path:
    path = folder / "bad.jsonl"
    good = {"id": "a", "date": "2020-01-01T00:00:00+00:00", "message": "m", "diff": "@@\n+x", "label": 0}
    path.write_text("\n".join(json.dumps({**good, "id": str(i)}) for i in range(5)) + "\n" +
                    json.dumps({**good, "label": 2}) + "\n")
    return path


def ray_results(ray_dir: Path) -> list[dict]:
    """The results Ray's driver logged for each trial (`result.json` in its session's driver artifacts)."""
    rows = []
    for path in ray_dir.rglob("driver_artifacts/*/result.json"):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def descends_from(pid: int, ancestor: int) -> bool:
    """Whether process `pid` is `ancestor` or one of its descendants (Linux /proc)."""
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
    return False


@pytest.fixture(scope="module")
def faulty_sweep(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultySweep]:
    """`sweeper run` of the three trials one at a time, with the hold on: once the good trial waits after its first
    evaluation (mid-run, whatever the machine's speed), its worker process (a Ray actor of this sweep's own Ray)
    is killed with SIGKILL and the hold is lifted."""
    folder = tmp_path_factory.mktemp("faults")
    paths = [GOOD, str(bad_data(folder)), str(folder / "missing.jsonl")]
    spec = write_spec(folder, "faults", {"data.sample": 200, "data.max_length": 48, "defaults.epochs": 2,
                                         "search": {"data.path": {"choice": paths}}, "sweep.trials": 3,
                                         "sweep.searcher": "grid"})
    ray_dir = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    gate = folder / "hold"
    gate.touch()
    log = folder / "sweep.log"
    try:
        with log.open("w") as out, sweeper_process("run", str(spec), "--tracking-uri", mlflow_server.uri, "--json",
                                                   cwd=folder, stdout=out,
                                                   env={"RAY_TMPDIR": str(ray_dir), HOLD_ENV: str(gate)}) as driver:
            try:
                [held] = wait_for_held(gate, time.monotonic() + 400)
            except TimeoutError:
                pytest.fail(f"the good trial never reported an evaluation:\n{log.read_text()[-3000:]}")
            assert descends_from(held.pid, driver.pid), "the held trial runs in this sweep's own Ray"
            os.kill(held.pid, signal.SIGKILL)
            gate.unlink()
            driver.wait(timeout=600)
        text = log.read_text()
        assert driver.returncode == 0, text[-3000:]
        yield FaultySweep(mlflow_server.uri, folder, json.loads(text.strip().splitlines()[-1]), held.pid,
                          ray_results(ray_dir))
    finally:
        gate.unlink(missing_ok=True)
        shutil.rmtree(ray_dir, ignore_errors=True)


@pytest.mark.slow
def test_deterministic_failures_fail_at_once_and_the_sweep_goes_on(faulty_sweep: FaultySweep) -> None:
    assert faulty_sweep.summary["trials"] == {"complete": 1, "pruned": 0, "failed": 2, "killed": 0}
    client = MlflowClient(faulty_sweep.uri)
    runs = faulty_sweep.runs()
    for path, reason in ((str(faulty_sweep.folder / "bad.jsonl"),
                          f"DataError: {faulty_sweep.folder / 'bad.jsonl'}:6: field 'label': must be 0 or 1, got 2"),
                         (str(faulty_sweep.folder / "missing.jsonl"), "file not found")):
        run = runs[path]
        tags = run.data.tags
        assert run.info.status == "FAILED" and tags["sweeper.state"] == "failed"
        assert reason in tags["sweeper.failure"]
        assert tags["sweeper.failure_kind"] == "deterministic" and tags["sweeper.retries"] == "0"
        attempts = [row for row in faulty_sweep.ray_results if row["config"]["values"]["data.path"] == path]
        assert len(attempts) == 1 and attempts[0]["failure"] == tags["sweeper.failure"]  # one try, in Ray's records
        assert not run.data.metrics  # nothing to rank it by
        traceback_files = client.list_artifacts(run.info.run_id, "error")
        assert traceback_files, "the traceback is an artifact"
        text = Path(client.download_artifacts(run.info.run_id, traceback_files[0].path,
                                              str(faulty_sweep.folder))).read_text()
        assert "sweeper/data/records.py" in text and "DataError" in text  # the frames, not just the message
    print(f"\nfailed at once: {[runs[path].data.tags['sweeper.failure'][:70] for path in runs if path != GOOD]}")


@pytest.mark.slow
def test_lost_worker_is_retried_and_ends_as_the_trial_run_alone(faulty_sweep: FaultySweep, tmp_path: Path) -> None:
    run = faulty_sweep.runs()[GOOD]
    tags = run.data.tags
    assert run.info.status == "FINISHED" and tags["sweeper.state"] == "complete"
    assert tags["sweeper.retries"] == "1" and "sweeper.failure_kind" not in tags
    assert "ActorDiedError" in tags["sweeper.retry_reason"] or "died" in tags["sweeper.retry_reason"]
    pids = [row["pid"] for row in faulty_sweep.ray_results if row["config"]["values"]["data.path"] == GOOD]
    assert faulty_sweep.killed_pid in pids and pids[-1] != faulty_sweep.killed_pid  # resumed by another worker

    client = MlflowClient(faulty_sweep.uri)
    logged = tmp_path / "logged"
    logged.mkdir()
    for name in (CONFIG_FILE, PREDICTIONS_FILE):
        client.download_artifacts(run.info.run_id, name, str(logged))
    config = TrialConfig.model_validate_json((logged / CONFIG_FILE).read_text())
    alone = run_trial(config, tmp_path / "alone")

    assert {key: run.data.metrics[final_metric_name(key)] for key in alone.metrics} == alone.metrics
    for key in alone.history[0]:
        history = client.get_metric_history(run.info.run_id, key)
        assert [metric.step for metric in history] == [1, 2]  # each evaluation logged once, none lost
        assert [metric.value for metric in sorted(history, key=lambda m: m.step)] == [row[key] for row in alone.history]
    assert (logged / PREDICTIONS_FILE).read_bytes() == (tmp_path / "alone" / PREDICTIONS_FILE).read_bytes()
    print(f"\nretried after: {tags['sweeper.retry_reason'][:90]}\nbest metrics equal to the trial run alone: "
          f"{ {key: round(value, 6) for key, value in alone.metrics.items()} }")


@pytest.mark.slow
def test_sweep_where_every_trial_fails_exits_non_zero_and_says_so(tmp_path: Path, mlflow_server: MlflowServer) -> None:
    paths = [str(tmp_path / "missing-1.jsonl"), str(tmp_path / "missing-2.jsonl")]
    spec = write_spec(tmp_path, "all-fail", {"search": {"data.path": {"choice": paths}}, "sweep.searcher": "grid"})
    out = sweeper("run", str(spec), "--tracking-uri", mlflow_server.uri, cwd=tmp_path, timeout=600)
    assert out.returncode == 1
    assert "every trial failed" in out.stderr
