"""One real CPU sweep through one Ray worker, `features` searched: each trial's own costs, its intervals in MLflow,
and an expert-feature trial through reproduce, predict, export and the registered model's loading.

The grid [full, lora] x [none, expert] runs one trial at a time in one reused worker, in the order full, lora, full,
lora (grid seed 5). The backbone is a randomly initialised RoBERTa with RoBERTa's vocabulary size (50,265) but hidden
size 256 and 2 layers: 15 M parameters, 13 M of them the embedding table, cheap to run but large enough that full
fine-tuning's gradients, AdamW state and best-weights copy (~4 x 59 MB) stand well out of the peak resident set. (On the
1.9 M-parameter embedded toy they add ~30 MB, within the resident set's trial-to-trial noise.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, RobertaConfig,
                          RobertaForSequenceClassification)

from harness import data_lines, last_json, sweeper, trial_runs, write_spec
from services import MlflowServer
from sweeper.backbone import load_tokenizer
from sweeper.cli import main
from sweeper.config import TrialConfig
from sweeper.costs import flop_parameters
from sweeper.data.encoding import encode_commits, with_features
from sweeper.data.features import FeatureScaler, feature_matrix
from sweeper.data.records import read_records, sample_records
from sweeper.methods import apply_method
from sweeper.metrics.bootstrap import classification_intervals
from sweeper.tasks import task_for
from sweeper.predictions import read_predictions
from sweeper.tasks.defects import predict
from sweeper.tasks.expert_head import load_with_expert_head
from sweeper.trained.export import export_run
from sweeper.trained.predict import predict_text
from sweeper.trained.register import TrialModel
from sweeper.trained.reproduce import reproduce
from sweeper.tracking.client import Tracker
from sweeper.tracking.schema import REGISTERED_ARTIFACT

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Sweep:
    uri: str
    backbone: Path
    runs: list  # oldest first

    def run(self, method: str, features: str):
        return next(r for r in self.runs if (r.data.params["method"], r.data.params["features"]) == (method, features))

    def logged(self, run, name: str, folder: Path) -> Path:
        return Path(MlflowClient(self.uri).download_artifacts(run.info.run_id, name, str(folder)))


def wide_backbone(folder: Path) -> Path:
    """A RoBERTa-vocabulary model with hidden size 256 and 2 layers, randomly initialised, with the embedded tokenizer
    (its 8,000 tokens use the first rows of the embedding table)."""
    tokenizer = load_tokenizer("embedded")
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=50265, hidden_size=256, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=1024, max_position_embeddings=514, pad_token_id=tokenizer.pad_token_id)
    RobertaForSequenceClassification(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def sweep(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    folder = tmp_path_factory.mktemp("one-worker")
    backbone = wide_backbone(folder / "backbone")
    spec = write_spec(folder, "one-worker", {
        "backbone": str(backbone), "data.sample": 200,
        "search": {"method": {"choice": ["full", "lora"]}, "features": {"choice": ["none", "expert"]}},
        "sweep.trials": 4, "sweep.searcher": "grid", "sweep.seed": 5, "sweep.max_concurrent": 1})
    summary = last_json(sweeper("run", str(spec), "--tracking-uri", mlflow_server.uri, "--json", cwd=folder))
    runs = trial_runs(mlflow_server.uri, summary["parent_run_id"])
    assert [r.data.tags["sweeper.state"] for r in runs] == ["complete"] * 4, summary
    return Sweep(mlflow_server.uri, backbone, runs)


def test_each_trials_peak_memory_is_its_own(sweep: Sweep) -> None:
    order = [(r.data.params["method"], r.data.metrics["peak_memory_mb"]) for r in sweep.runs]
    print("trials in order, peak memory (MB):", order)
    methods = [method for method, _ in order]
    assert methods.index("full") < len(methods) - 1 - methods[::-1].index("lora")  # a LoRA trial followed a full one
    full = [peak for method, peak in order if method == "full"]
    lora = [peak for method, peak in order if method == "lora"]
    assert max(lora) < min(full)  # a worker's lifetime peak would make a LoRA trial after a full one as high


def test_train_flops_follow_the_trained_parameters(sweep: Sweep) -> None:
    tokens = set()
    for run in sweep.runs:
        config = TrialConfig.from_flat(run.data.params)
        model = apply_method(task_for(config).load_model(config.backbone), config)
        counts = flop_parameters(model)
        per_token = 2 * (counts.forward + counts.backward_inputs + counts.trained)
        tokens.add(run.data.metrics["train_flops"] / per_token)
    assert len(tokens) == 1 and next(iter(tokens)).is_integer()  # the same token count in every trial
    full, lora = (sweep.run(method, "none").data.metrics["train_flops"] for method in ("full", "lora"))
    assert 1.3 < full / lora < 1.6  # about 6NT against 4NT


def test_intervals_are_logged_unprefixed_and_match_the_predictions(sweep: Sweep, tmp_path: Path) -> None:
    client = MlflowClient(sweep.uri)
    for run in sweep.runs:
        metrics = run.data.metrics
        assert "best_auc_ci_low" not in metrics and "auc_ci_low" in metrics
        history = client.get_metric_history(run.info.run_id, "auc_ci_high")
        assert [(m.step, m.value) for m in history] == [(0, metrics["auc_ci_high"])]
        scored = read_predictions(sweep.logged(run, "predictions.csv", tmp_path / run.info.run_id)).scored
        reference = classification_intervals([label for _, label, _ in scored], [score for _, _, score in scored])
        for name in ("auc", "f1", "mcc"):
            assert (metrics[f"{name}_ci_low"], metrics[f"{name}_ci_high"]) == pytest.approx(reference[name], abs=1e-12)
        assert metrics["auc_ci_low"] <= metrics["best_auc"] <= metrics["auc_ci_high"]


def test_the_logged_scaler_is_fitted_on_the_trials_training_split(sweep: Sweep, tmp_path: Path) -> None:
    client = MlflowClient(sweep.uri)
    assert "feature_scaler.json" not in {a.path for a in client.list_artifacts(sweep.run("lora", "none").info.run_id)}
    run = sweep.run("lora", "expert")
    scaler = FeatureScaler.from_json(sweep.logged(run, "feature_scaler.json", tmp_path).read_text())
    valid = {id_ for id_, _, _ in read_predictions(sweep.logged(run, "predictions.csv", tmp_path)).scored}
    sampled = sample_records(read_records("bundled:jitdp").records, 200, 0)
    train = feature_matrix([record for record in sampled if record.id not in valid])
    expected = FeatureScaler().fit(train)
    assert scaler.rows == len(train) == len(sampled) - len(valid)
    np.testing.assert_allclose(scaler.mean, expected.mean, rtol=1e-12)
    np.testing.assert_allclose(scaler.scale, expected.scale, rtol=1e-12)
    assert not np.allclose(scaler.mean, FeatureScaler().fit(feature_matrix(sampled)).mean)


def test_reproduce_of_an_expert_feature_trial_is_identical(sweep: Sweep) -> None:
    outcome = reproduce(Tracker.connect(sweep.uri), sweep.run("lora", "expert").info.run_id)
    assert outcome.mismatches() == [] and outcome.predictions_differing == 0 and outcome.predictions > 0
    assert {"auc", "f1", "mcc"} <= set(outcome.original)


def validation_lines(sweep: Sweep, run, folder: Path, count: int = 3) -> list[dict]:
    """The first validation commits of a run, as the data file's JSON lines; and their logged scores."""
    scored = read_predictions(sweep.logged(run, "predictions.csv", folder)).scored[:count]
    rows = {row["id"]: row for row in map(json.loads, data_lines("bundled:jitdp"))}
    return [rows[id_] | {"logged": score} for id_, _, score in scored]


def test_predict_reads_the_features_of_jsonl_commits(sweep: Sweep, tmp_path: Path) -> None:
    run = sweep.run("full", "expert")
    run_id, rows = run.info.run_id, validation_lines(sweep, run, tmp_path)
    tracker = Tracker.connect(sweep.uri)
    logged = [row.pop("logged") for row in rows]
    text = "".join(json.dumps(row) + "\n" for row in rows)
    scores = [p.probability for p in predict_text(tracker, run_id, text)]
    assert scores == pytest.approx(logged, abs=1e-6)  # the trial's own validation scores
    changed = "".join(json.dumps(row | {"features": {name: value * 20 + 7 for name, value in row["features"].items()}})
                      + "\n" for row in rows)
    moved = [p.probability for p in predict_text(tracker, run_id, changed)]
    assert all(abs(a - b) > 1e-4 for a, b in zip(scores, moved)), (scores, moved)


def test_predict_on_git_show_says_the_run_needs_features(sweep: Sweep, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    show = tmp_path / "commit.txt"
    show.write_text("commit 3f2a9c1d5e7b8a0f\nAuthor: A <a@b.c>\nDate:   Mon Nov 25 10:15:00 2024 +0100\n\n"
                    "    Fix the check\n\ndiff --git a/A.java b/A.java\n--- a/A.java\n+++ b/A.java\n"
                    "@@ -1 +1 @@\n-a\n+b\n")
    run_id = sweep.run("lora", "expert").info.run_id
    code = main(["predict", run_id, str(show), "--tracking-uri", sweep.uri])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    (line,) = captured.err.strip().splitlines()
    assert line.startswith(f"error: run {run_id} was trained with expert features (features: expert)")
    assert 'give JSON Lines with a "features" object' in line


def test_export_writes_the_scaler_and_loads_as_its_manifest_says(sweep: Sweep, tmp_path: Path) -> None:
    run = sweep.run("lora", "expert")
    out = tmp_path / "exported"
    manifest = json.loads(export_run(Tracker.connect(sweep.uri), run.info.run_id, out, merge=True).read_text())
    assert manifest["format"] == "merged" and manifest["features"]["scaler"] == "feature_scaler.json"
    assert "load_with_expert_head" in manifest["load"] and "TrialConfig(method='full')" in manifest["load"]
    scaler = FeatureScaler.from_json((out / "feature_scaler.json").read_text())
    assert scaler == FeatureScaler.from_json(sweep.logged(run, "feature_scaler.json", tmp_path).read_text())
    # as the manifest says: a fresh backbone, the head, the merged weights; features scaled with the saved scaler
    backbone = AutoModelForSequenceClassification.from_pretrained(sweep.backbone, num_labels=2)
    model = load_with_expert_head(backbone, TrialConfig(method="full"), out)
    rows = validation_lines(sweep, run, tmp_path)
    ids = [row["id"] for row in rows]
    records = sorted((r for r in read_records("bundled:jitdp").records if r.id in ids), key=lambda r: ids.index(r.id))
    tokenizer = AutoTokenizer.from_pretrained(out)
    config = TrialConfig.model_validate(manifest["config"])
    items = with_features(encode_commits(records, tokenizer, config.data.max_length, config.data.message_tokens),
                          scaler.transform(feature_matrix(records)).tolist())
    scores, _ = predict(model, items, 8, tokenizer.pad_token_id, torch.device("cpu"))
    assert scores == pytest.approx([row["logged"] for row in rows], abs=1e-5)


def test_a_registered_expert_trial_loads_its_head_and_scaler(sweep: Sweep, tmp_path: Path) -> None:
    """What `sweeper register` stores (the unmerged export) loads as its pyfunc model does, features scaled."""
    run = sweep.run("full", "expert")
    export_run(Tracker.connect(sweep.uri), run.info.run_id, tmp_path / "trial")
    model = TrialModel()
    model.load_context(SimpleNamespace(artifacts={REGISTERED_ARTIFACT: str(tmp_path / "trial")}))
    rows = validation_lines(sweep, run, tmp_path)
    logged = [row.pop("logged") for row in rows]
    scored = model.predict(None, pd.DataFrame(rows))
    assert scored["id"].tolist() == [row["id"] for row in rows]
    assert scored["probability"].tolist() == pytest.approx(logged, abs=1e-6)
