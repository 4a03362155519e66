"""Failing trials: each ends FAILED with its reason, the sweep goes on, the exit code tells the story."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from harness import last_json, small_trial, sweeper, trial_runs, write_spec
from services import MlflowServer
from sweeper.trial import TrialFailed, run_trial


def test_nan_loss_fails_the_trial_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", lambda self, logits, labels: logits.sum() * float("nan"))
    with pytest.raises(TrialFailed, match=r"loss is nan at step 1 \(lr 0.0001 may be too high\)"):
        run_trial(small_trial(lr=1e-4))


def test_out_of_memory_fails_the_trial_with_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_memory(self: torch.nn.Module, *args: object, **kwargs: object) -> None:
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
    monkeypatch.setattr(torch.nn.Embedding, "forward", no_memory)
    with pytest.raises(TrialFailed, match="out of memory at batch_size 16, max_length 32: lower one of them"):
        run_trial(small_trial(**{"data.max_length": 32}))


def sweep(tmp_path: Path, name: str, paths: list[str], uri: str) -> subprocess.CompletedProcess:
    """A grid over data files, one trial each, two at a time."""
    spec = write_spec(tmp_path, name, {"search": {"data.path": {"choice": paths}}, "sweep.trials": len(paths),
                                       "sweep.searcher": "grid", "sweep.max_concurrent": 2})
    return sweeper("run", str(spec), "--tracking-uri", uri, "--json", cwd=tmp_path, timeout=600)


@pytest.mark.slow
def test_failed_trials_are_recorded_and_the_sweep_goes_on(tmp_path: Path, mlflow_server: MlflowServer) -> None:
    bad = tmp_path / "bad.jsonl"
    good = {"id": "a", "date": "2020-01-01T00:00:00+00:00", "message": "m", "diff": "@@\n+x", "label": 0}
    bad.write_text("\n".join(json.dumps({**good, "id": str(i)}) for i in range(5)) + "\n" +
                   json.dumps({**good, "label": 2}) + "\n")
    out = sweep(tmp_path, "faults", ["bundled:jitdp", str(bad), str(tmp_path / "missing.jsonl")], mlflow_server.uri)
    summary = last_json(out)
    assert summary["trials"] == {"complete": 1, "pruned": 0, "failed": 2, "killed": 0}
    client = MlflowClient(mlflow_server.uri)
    runs = {run.data.params["data.path"]: run for run in trial_runs(mlflow_server.uri, summary["parent_run_id"])}
    assert runs["bundled:jitdp"].info.status == "FINISHED"
    for path, reason in ((str(bad), f"{bad}:6: field 'label': must be 0 or 1, got 2"),
                         (str(tmp_path / "missing.jsonl"), "file not found")):
        run = runs[path]
        assert run.info.status == "FAILED" and run.data.tags["sweeper.state"] == "failed"
        assert reason in run.data.tags["sweeper.failure"]
        traceback_files = client.list_artifacts(run.info.run_id, "error")
        assert traceback_files, "the traceback is an artifact"
        text = Path(client.download_artifacts(run.info.run_id, traceback_files[0].path, str(tmp_path))).read_text()
        assert "sweeper/data/records.py" in text and "DataError" in text  # the frames, not just the message


@pytest.mark.slow
def test_sweep_where_every_trial_fails_exits_non_zero_and_says_so(tmp_path: Path, mlflow_server: MlflowServer) -> None:
    out = sweep(tmp_path, "all-fail", [str(tmp_path / "missing-1.jsonl"), str(tmp_path / "missing-2.jsonl")],
                mlflow_server.uri)
    assert out.returncode == 1
    assert "every trial failed" in out.stderr
