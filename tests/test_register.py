"""`sweep.register_best` and `sweeper register`: a trial's model in the MLflow Model Registry, loaded back through
`models:/NAME/VERSION` and scoring the validation commits exactly as its run logged them; `predict` and `export`
take `models:/` URIs. All on the session's tiny sweep (whose best trial its spec registers)."""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from services import MlflowServer
from sweeper.data.records import read_bytes
from sweeper.errors import SweeperError
from sweeper.trained.export import export_run
from sweeper.trained.predict import predict_text
from sweeper.trained.register import register_run
from sweeper.tracking.client import Tracker
from tiny_sweep import TinySweep, tiny_sweep


@pytest.fixture(scope="module")
def sweep(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> TinySweep:
    return tiny_sweep(mlflow_server.uri, tmp_path_factory.mktemp("tiny-sweep"))


@pytest.fixture
def registry(sweep: TinySweep, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """MLflow's global tracking (and so registry) URI on the sweep's server while a test loads `models:/` URIs.
    `set_tracking_uri` also sets $MLFLOW_TRACKING_URI, which later tests' subprocesses would inherit: monkeypatch
    takes it back out after the test."""
    previous = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sweep.uri)
    mlflow.set_tracking_uri(sweep.uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def logged_validation(sweep: TinySweep, run_id: str, folder: Path) -> tuple[list[dict], list[float]]:
    """The validation commits a run scored (as data-format rows, from the bundled file) and its logged scores."""
    path = MlflowClient(sweep.uri).download_artifacts(run_id, "predictions.csv", str(folder))
    rows = list(csv.DictReader(open(path, encoding="utf-8")))
    lines = gzip.decompress(read_bytes("bundled:jitdp")).splitlines()
    commits = {commit["id"]: commit for commit in map(json.loads, lines)}
    return [commits[row["id"]] for row in rows], [float(row["score"]) for row in rows]


@pytest.mark.slow
def test_the_best_trial_is_registered_and_scores_its_logged_predictions(sweep: TinySweep, registry: None,
                                                                        tmp_path: Path) -> None:
    best = sweep.best_run()
    version = MlflowClient(sweep.uri).get_model_version("tiny-report", "1")
    assert version.run_id == best.info.run_id == sweep.summary["best_run_id"]
    assert version.tags["best_auc"] == f"{best.data.metrics['best_auc']:.6g}"
    assert version.tags["method"] == best.data.params["method"] and version.tags["lr"] == best.data.params["lr"]
    assert best.data.tags["mlflow.note.content"] in version.description
    commits, scores = logged_validation(sweep, best.info.run_id, tmp_path)
    model = mlflow.pyfunc.load_model("models:/tiny-report/1")
    predicted = model.predict(pd.DataFrame(commits))
    assert list(predicted["id"]) == [commit["id"] for commit in commits]
    assert list(predicted["probability"]) == scores  # the same numbers, to the last digit
    assert model.metadata.flavors["python_function"]["loader_module"] == "mlflow.pyfunc.loaders.code_model"


@pytest.mark.slow
def test_a_registered_lora_trial_predicts_and_exports_through_models_uris(sweep: TinySweep, tmp_path: Path) -> None:
    run = sweep.best_run("lora")
    client, tracker = MlflowClient(sweep.uri), Tracker.connect(sweep.uri)
    version = register_run(tracker, run.info.run_id, "tiny-lora")  # what `sweeper register RUN --name` runs
    assert str(version.version) == "1" and version.run_id == run.info.run_id
    assert version.tags["lora.rank"] == run.data.params["lora.rank"]
    assert not any(key.startswith("adapter.") for key in version.tags)  # only the sections the trial used
    client.set_registered_model_alias("tiny-lora", "champion", "1")
    assert tracker.resolve_run("models:/tiny-lora/1") == run.info.run_id
    assert tracker.resolve_run("models:/tiny-lora@champion") == run.info.run_id

    commits, scores = logged_validation(sweep, run.info.run_id, tmp_path)
    text = "\n".join(json.dumps(commit) for commit in commits)
    predicted = predict_text(tracker, "models:/tiny-lora@champion", text)
    assert [p.probability for p in predicted] == pytest.approx(scores, abs=1e-6)

    manifest = json.loads(export_run(tracker, "models:/tiny-lora/1", tmp_path / "export").read_text())
    assert manifest["run_id"] == run.info.run_id and manifest["format"] == "lora"
    assert (tmp_path / "export" / "adapter_config.json").is_file()


@pytest.mark.slow
def test_bad_references_are_one_line_errors(sweep: TinySweep) -> None:
    tracker = Tracker.connect(sweep.uri)
    with pytest.raises(SweeperError, match="no such model version"):
        tracker.resolve_run("models:/tiny-report/99")
    with pytest.raises(SweeperError, match="give models:/NAME/VERSION"):
        tracker.resolve_run("models:/tiny-report")
    pruned = next((run for run in sweep.trial_runs() if run.data.tags["sweeper.state"] == "pruned"), None)
    if pruned is not None:
        with pytest.raises(SweeperError, match="is pruned, not complete"):
            register_run(tracker, pruned.info.run_id, "tiny-pruned")
