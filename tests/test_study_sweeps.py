"""The study's questions as one real sweep (Ray, the MLflow server, S3): message generation on an encoder-only
backbone with a new decoder, a cross-project split and the training fraction searched, for full, adapter and LoRA.
The same sweep serves the report's fraction section, `reproduce` and reloading the logged models; plus unit tests
of the fraction section."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from PIL import Image
from transformers import RobertaConfig, RobertaModel

from harness import last_json, sweeper, trial_runs, write_spec
from services import MlflowServer
from sweeper.backbone import load_tokenizer
from sweeper.report import write_report
from sweeper.report.sections import fraction_sections
from sweeper.report.document import Image as DocImage, Table
from sweeper.tracking.client import Tracker
from sweeper.recorded.sweeps import SweepDetails, SweepRecord, TrialRun, find_sweep
from sweeper.trained.reproduce import reproduce
from sweeper.recipe import predict_saved

FRACTIONS = (0.25, 1.0)
METHODS = ("adapter", "full", "lora")


def save_tiny_encoder(folder: Path) -> str:
    """A randomly initialised 2-layer RoBERTa encoder (hidden 64) with the embedded tokenizer, as a backbone folder."""
    tokenizer = load_tokenizer("embedded")
    torch.manual_seed(0)
    RobertaModel(RobertaConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=128, max_position_embeddings=130, pad_token_id=tokenizer.pad_token_id,
                               bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
                 ).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def study(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`sweeper run` of a 6-trial grid: method x training fraction, CMG on click commits after training on
    requests and flask; returns `sweeper run --json`'s summary with the tracking URI and work folder."""
    folder = tmp_path_factory.mktemp("study-sweep")
    backbone = save_tiny_encoder(folder / "tiny-roberta")
    spec = write_spec(folder, "study-cmg", {
        "task": "cmg", "backbone": backbone, "metric": "eval_loss", "mode": "min",
        "data": {"path": "bundled:cmg", "sample": 200, "max_length": 32, "message_tokens": 8,
                 "split": {"kind": "project", "train": ["requests", "flask"], "valid": ["click"]}},
        "defaults": {"epochs": 1, "batch_size": 16, "lr": 3e-3, "adapter": {"bottleneck": 16}, "lora": {"rank": 4},
                     "generation": {"max_new_tokens": 6, "decoder_layers": 2}},
        "search": {"method": {"choice": list(METHODS)}, "data.train_fraction": {"choice": list(FRACTIONS)}},
        "sweep.trials": 6, "sweep.searcher": "grid", "sweep.max_concurrent": 2})
    summary = last_json(sweeper("run", str(spec), "--tracking-uri", mlflow_server.uri, "--json", cwd=folder))
    return summary | {"uri": mlflow_server.uri, "folder": folder}


def runs_by_trial(study: dict) -> dict[tuple[str, float], object]:
    runs = trial_runs(study["uri"], study["parent_run_id"])
    return {(run.data.tags["sweeper.method"], float(run.data.params["data.train_fraction"])): run for run in runs}


def logged(study: dict, run_id: str, path: str, folder: Path) -> Path:
    return Path(MlflowClient(study["uri"]).download_artifacts(run_id, path, str(folder)))


def prediction_ids(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [row["id"] for row in csv.DictReader(handle)]


@pytest.mark.slow
def test_every_method_and_fraction_trains_on_other_projects_and_validates_on_the_same_commits(
        study: dict, tmp_path: Path) -> None:
    runs = runs_by_trial(study)
    assert set(runs) == {(method, fraction) for method in METHODS for fraction in FRACTIONS}
    assert all(run.data.tags["sweeper.state"] == "complete" for run in runs.values())
    for method in METHODS:
        small, whole = (runs[(method, fraction)].data.metrics["train_samples"] for fraction in FRACTIONS)
        assert 0.2 < small / whole < 0.3
    ids = {key: prediction_ids(logged(study, run.info.run_id, "predictions.csv", tmp_path / run.info.run_id))
           for key, run in runs.items()}
    first = next(iter(ids.values()))
    assert first and all(found == first for found in ids.values())  # the same validation commits in every trial
    assert all(commit.startswith("click@") for commit in first)


@pytest.mark.slow
def test_the_report_shows_the_best_metric_per_method_and_fraction(study: dict, tmp_path: Path) -> None:
    tracker = Tracker.connect(study["uri"])
    written = write_report(tracker, find_sweep(tracker, study["sweep_id"]), tmp_path, log=False)
    markdown = (tmp_path / "report.md").read_text()
    body = markdown.split("## eval_loss against the training fraction\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in body.splitlines() if line.startswith("|")]
    headers = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [dict(zip(headers, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[2:]]
    runs = runs_by_trial(study)
    assert [(row["method"], float(row["train fraction"])) for row in rows] == sorted(runs)
    for row in rows:
        run = runs[(row["method"], float(row["train fraction"]))]
        assert row["run"] == f"`{run.info.run_id}`"
        assert row["best eval_loss"] == f"{run.data.metrics['best_eval_loss']:.4f}"
        assert row["training commits"] == f"{int(run.data.metrics['train_samples']):,}"
    figure = tmp_path / "fraction.png"
    assert figure in written.files and Image.open(figure).size[0] > 400


@pytest.mark.slow
def test_reproduce_gives_identical_metrics_and_predictions_for_each_method(study: dict) -> None:
    tracker = Tracker.connect(study["uri"])
    for method in METHODS:
        outcome = reproduce(tracker, runs_by_trial(study)[(method, 0.25)].info.run_id)  # the quicker to re-train
        assert outcome.original == outcome.reproduced and outcome.mismatches() == []
        assert outcome.predictions > 0 and outcome.predictions_differing == 0


@pytest.mark.slow
def test_the_logged_models_reload_to_their_logged_predictions(study: dict, tmp_path: Path) -> None:
    for method in METHODS:
        run_id = runs_by_trial(study)[(method, 1.0)].info.run_id
        folder = tmp_path / method
        for path in ("model", "config.json", "predictions.csv"):
            logged(study, run_id, path, folder)
        with (folder / "predictions.csv").open(newline="", encoding="utf-8") as handle:
            assert predict_saved(folder) == [row["prediction"] for row in csv.DictReader(handle)]


def trial(number: int, method: str, fraction: float | None, value: float | None) -> TrialRun:
    params = {"method": method} | ({"data.train_fraction": str(fraction)} if fraction is not None else {})
    metrics = {"best_auc": value, "train_samples": 1000.0 * (fraction or 1.0)} if value is not None else {}
    return TrialRun(f"run{number}", f"trial-{number}", number, method, "complete" if value is not None else "pruned",
                    params, metrics)


def details(trials: list[TrialRun]) -> SweepDetails:
    return SweepDetails(SweepRecord("s", "p", "0", "auc", "max"), "e", {}, {}, None, trials)


def test_the_fraction_section_keeps_the_best_trial_per_method_and_fraction(tmp_path: Path) -> None:
    trials = [trial(0, "lora", 0.1, 0.61), trial(1, "lora", 0.1, 0.66), trial(2, "lora", 1.0, 0.70),
              trial(3, "full", 0.1, 0.58), trial(4, "full", 1.0, 0.74), trial(5, "full", 1.0, None)]
    [section] = fraction_sections(details(trials), tmp_path)
    table = next(block for block in section.blocks if isinstance(block, Table))
    assert [row[:5] for row in table.rows] == [
        ["full", "0.1", "100", "1", "trial-3"], ["full", "1", "1,000", "1", "trial-4"],
        ["lora", "0.1", "100", "2", "trial-1"], ["lora", "1", "1,000", "1", "trial-2"]]
    assert [row[6] for row in table.rows] == ["0.5800", "0.7400", "0.6600", "0.7000"]
    image = next(block for block in section.blocks if isinstance(block, DocImage))
    assert image.path == tmp_path / "fraction.png" and Image.open(image.path).size[0] > 400


def test_no_fraction_section_without_a_second_fraction(tmp_path: Path) -> None:
    assert fraction_sections(details([trial(0, "lora", None, 0.6), trial(1, "full", 1.0, 0.7)]), tmp_path) == []
    assert not (tmp_path / "fraction.png").exists()
