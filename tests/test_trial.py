"""One trial end to end on the embedded backbone: each method trains, repeats exactly, reloads exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import SEARCH_SPACES, predict_in_fresh_process, small_trial, sweeper
from sweeper.predictions import read_predictions
from sweeper.tracking.schema import PREDICTIONS_FILE
from sweeper.trial import run_trial

pytestmark = pytest.mark.slow

SMOKE = SEARCH_SPACES / "smoke.yaml"


@pytest.mark.parametrize("method", ["full", "adapter", "lora", "ia3"])
def test_each_method_trains_and_reports(method: str, tmp_path: Path) -> None:
    reports = []
    result = run_trial(small_trial(method, epochs=2), tmp_path, reports.append)
    assert [evaluation.epoch for evaluation in reports] == [1.0, 2.0]
    for key in ("auc", "f1", "mcc", "precision", "recall", "max_f1"):
        assert 0 <= abs(result.metrics[key]) <= 1
    assert result.costs["trainable_params"] <= result.costs["total_params"]
    if method != "full":
        assert result.costs["trainable_percent"] < 10
    assert result.costs["samples_per_second"] > 0 and result.costs["peak_memory_mb"] > 0
    assert {p.name for p in tmp_path.iterdir()} >= {"model", "config.json", "predictions.csv", "metrics.json"}


def test_same_config_and_seed_give_identical_metrics() -> None:
    config = small_trial("lora")
    assert run_trial(config).metrics == run_trial(config).metrics


def test_saved_artifacts_reproduce_predictions_in_a_fresh_process(tmp_path: Path) -> None:
    for method in ("lora", "adapter", "full"):
        folder = tmp_path / method
        run_trial(small_trial(method), folder)
        assert predict_in_fresh_process(folder) == read_predictions(folder / PREDICTIONS_FILE).values, method


def test_early_stopping_keeps_the_best_evaluation() -> None:
    result = run_trial(small_trial("lora", epochs=4, patience=1, lr=3e-3, eval_every_steps=3))
    best = max(history["auc"] for history in result.history)
    assert result.metrics["auc"] == best
    assert len(result.history) >= 2


def test_cli_train_prints_json_metrics_and_costs(tmp_path: Path) -> None:
    out = sweeper("train", str(SMOKE), "--set", "method=lora", "--set", "lora.rank=8", "--set", "lr=1e-4",
                  "--set", "data.sample=200", "--set", "epochs=1", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout)
    for key in ("f1", "auc", "mcc", "trainable_params", "total_params", "train_seconds", "peak_memory_mb"):
        assert key in figures


def test_cli_bad_data_line_is_one_error_line(tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    good = {"id": "a", "date": "2020-01-01T00:00:00+00:00", "message": "m", "diff": "@@\n+x", "label": 0}
    data.write_text(json.dumps(good) + "\n" + json.dumps({**good, "label": "yes"}) + "\n")
    out = sweeper("train", str(SMOKE), "--set", f"data.path={data}", cwd=tmp_path)
    assert out.returncode == 2
    assert [line for line in out.stderr.splitlines() if line.startswith("error:") or "Traceback" in line] == \
        [f"error: {data}:2: field 'label': must be 0 or 1, got 'yes'"]


def test_cli_bad_spec_is_one_error_line(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: x\ndefaults:\n  lora: {rnak: 8}\n")
    out = sweeper("train", str(spec), cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == (f"error: {spec}:3: field 'defaults.lora.rnak': unknown key (did you mean 'rank'?)")


def test_a_trial_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    config = small_trial("lora", epochs=3)
    checkpoint = tmp_path / "checkpoint"

    class WorkerLost(Exception):
        pass

    def crash_after_first_evaluation(evaluation) -> None:
        evaluation.save(checkpoint)
        raise WorkerLost

    with pytest.raises(WorkerLost):
        run_trial(config, report=crash_after_first_evaluation)
    seen = []
    resumed = run_trial(config, report=seen.append, resume_from=checkpoint)
    uninterrupted = run_trial(config)
    assert [evaluation.index for evaluation in seen] == [2, 3]  # carries on at the second evaluation
    assert resumed.history[0] == uninterrupted.history[0]  # the first epoch came from the checkpoint
    assert len(resumed.history) == 3 and resumed.costs["epochs_run"] == 3.0
