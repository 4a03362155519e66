"""Multi-objective sweeps (`sweep.objectives`): the spec, the searcher telling Optuna two values, the sweep's
summary and the report's Pareto set, and one small real sweep through Ray, Optuna and MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient
from optuna.study import StudyDirection
from optuna.trial import TrialState

from harness import last_json, sweeper, trial_runs, write_spec
from sweeper.errors import SpecError
from sweeper.recorded.objectives import name_objectives, study_objectives
from sweeper.sweep.search import OptunaSearcher
from sweeper.recorded.sweeps import SweepDetails, SweepRecord, TrialRun
from sweeper.sweep.space import define_by_run
from sweeper.spec import format_objectives, load_spec, parse_objectives, parse_spec

OBJECTIVES = "  objectives:\n    - {metric: auc, mode: max}\n    - {metric: trainable_params, mode: min}\n"
BASE = "name: x\nsearch:\n  method: {choice: [lora, adapter]}\n  lr: {loguniform: [1.0e-4, 1.0e-3]}\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def test_objectives_parse_with_default_modes_and_no_pruner(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, BASE + "sweep:\n  objectives: [{metric: auc}, {metric: peak_memory_mb}]\n"))
    assert spec.objectives() == [("auc", "max"), ("peak_memory_mb", "min")]
    assert spec.sweep.pruner.kind == "none"  # a multi-objective spec that names no pruner gets none
    spec = load_spec(write(tmp_path, BASE + "sweep:\n  pruner: {kind: none}\n" + OBJECTIVES))
    assert spec.objectives() == [("auc", "max"), ("trainable_params", "min")]
    assert load_spec(write(tmp_path, BASE)).objectives() == []  # single-objective by default
    assert parse_objectives(format_objectives(spec.objectives())) == spec.objectives()
    assert format_objectives(spec.objectives()) == "auc:max,trainable_params:min"


@pytest.mark.parametrize(("text", "line", "field", "words"), [
    ("sweep:\n  pruner: {kind: median}\n" + OBJECTIVES, 6, "sweep.pruner", "set pruner: {kind: none} for multi-objective"),
    ("sweep:\n  objectives:\n    - {metric: auc}\n    - {metric: trainable_parms}\n", 8, "sweep.objectives.1.metric",
     "'trainable_params'"),
    ("sweep:\n  objectives:\n    - {metric: auc}\n    - {metric: f1}\n", 8, "sweep.objectives.1.metric",
     "must be a cost"),
    ("sweep:\n  objectives:\n    - {metric: f1}\n    - {metric: train_seconds}\n", 7, "sweep.objectives.0.metric",
     "set metric: f1 at the top level"),
    ("sweep:\n  objectives:\n    - {metric: auc, mode: min}\n    - {metric: train_seconds}\n", 7,
     "sweep.objectives.0.mode", "disagrees"),
    ("sweep:\n  objectives: [{metric: auc}]\n", 6, "sweep.objectives", "exactly two objectives"),
    ("sweep:\n  objectives:\n    - {metric: auc, mdoe: max}\n    - {metric: train_seconds}\n", 7,
     "sweep.objectives.0.mdoe", "did you mean 'mode'"),
])
def test_bad_objectives_name_line_field_and_fix(tmp_path: Path, text: str, line: int, field: str, words: str) -> None:
    path = write(tmp_path, BASE + text)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: field '{field}'"), message
    assert words in message, message


def multi_study() -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.TPESampler(seed=0))
    return name_objectives(study, [("auc", "max"), ("trainable_params", "min")])


def test_searcher_tells_the_study_both_objectives_from_the_final_result() -> None:
    spec = parse_spec(yaml.safe_load(BASE + "sweep:\n" + OBJECTIVES), "spec.yaml")
    study = multi_study()
    assert study_objectives(study) == [("auc", "max"), ("trainable_params", "min")]
    searcher = OptunaSearcher(study, define_by_run(spec), spec.metric, spec.mode)
    finals = {"a": {"auc": 0.7, "f1": 0.3, "trainable_params": 1e6, "train_seconds": 5.0, "final": 1},
              "b": {"auc": 0.6, "trainable_params": 1e4, "final": 1},
              "c": {"auc": 0.5, "trainable_params": 2e4, "final": 1},
              "d": {"auc": 0.65, "final": 1}}  # no cost: the study cannot rank it
    for trial_id, final in finals.items():
        config = searcher.suggest(trial_id)
        assert config is not None and config["values"]["method"] in ("lora", "adapter")
        assert searcher.report_and_check(trial_id, 1, 0.5) is False  # no intermediate values in a multi-objective study
        searcher.on_trial_complete(trial_id, final)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3 + [TrialState.FAIL]
    assert [t.values for t in trials[:3]] == [[0.7, 1e6], [0.6, 1e4], [0.5, 2e4]]
    assert sorted(t.number for t in study.best_trials) == [0, 1]  # trial 2 is beaten on both by trial 1
    assert all(not t.intermediate_values for t in trials)


def test_single_objective_searcher_still_tells_one_value() -> None:
    spec = parse_spec(yaml.safe_load(BASE), "spec.yaml")
    study = optuna.create_study(direction="maximize")
    searcher = OptunaSearcher(study, define_by_run(spec), "auc", "max")
    assert searcher.objectives == []
    searcher.suggest("a")
    searcher.report_and_check("a", 1, 0.55)
    searcher.on_trial_complete("a", {"auc": 0.6, "trainable_params": 10.0})
    assert study.best_trial.value == 0.6 and study.best_trial.intermediate_values == {1: 0.55}


@pytest.mark.slow  # creates a SQLite MLflow store: ~3 s
def test_summarise_tags_objectives_and_logs_the_pareto_set(tmp_path: Path) -> None:
    from sweeper.recorded.summary import SweepSummary, log_summary, summarise
    from sweeper.tracking.client import Tracker

    study = multi_study()
    for auc, params in ((0.7, 1e6), (0.6, 1e4), (0.5, 2e4)):
        trial = study.ask()
        study.tell(trial, [auc, params])
    tracker = Tracker.connect(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = tracker.start_sweep("mo", "mo-1", "name: mo")
    runs = []
    for number in range(3):
        runs.append(tracker.start_trial("mo", parent, "mo-1", f"trial-{number}", {"method": "lora"},
                                        {"optuna.trial": str(number), "sweeper.method": "lora"}))
        tracker.end_run(runs[-1], "complete")
    summary = summarise(tracker, SweepSummary("mo-1", parent, "mo", tracker.uri, "memory"), study, "auc")
    log_summary(tracker, summary)
    assert summary.best_value == 0.7 and summary.best_run_id == runs[0]
    run = tracker.client.get_run(parent)
    assert run.data.tags["sweeper.objectives"] == "auc:max,trainable_params:min"
    assert run.data.metrics["pareto_trials"] == 2.0
    pareto = json.loads(Path(tracker.client.download_artifacts(parent, "pareto.json", str(tmp_path))).read_text())
    assert [(t["number"], t["run_id"]) for t in pareto["trials"]] == [(0, runs[0]), (1, runs[1])]
    assert pareto["trials"][1]["values"] == {"auc": 0.6, "trainable_params": 1e4}


def test_report_lists_and_rings_the_optuna_pareto_set(tmp_path: Path) -> None:
    from sweeper.report.sections import optuna_pareto, optuna_pareto_section, pareto_section

    study = multi_study()
    trials = []
    for number, (method, auc, params) in enumerate((("full", 0.7, 1e6), ("lora", 0.6, 1e4), ("adapter", 0.5, 2e4))):
        study.tell(study.ask(), [auc, params])
        trials.append(TrialRun(f"run{number}", f"trial-{number}", number, method, "complete", {"method": method},
                               {"best_auc": auc, "trainable_params": params, "train_seconds": 10.0 + number}, [(1.0, auc)],
                               1000, 0.0, 1.0))
    details = SweepDetails(SweepRecord("s", "p", "0", "auc", "max"), "mo",
                           {"sweeper.objectives": "auc:max,trainable_params:min"}, {}, None, trials)
    assert [(t.number, run.run_id if run else None) for t, run in optuna_pareto(details, study)] == [(1, "run1"), (0, "run0")]
    section = optuna_pareto_section(details, study, "")
    table = next(block for block in section.blocks if not isinstance(block, str))
    assert section.title == "Pareto set (Optuna)"
    assert table.headers == ["trial", "method", "run", "auc (max)", "trainable_params (min)"]
    assert [row[:3] for row in table.rows] == [["#1", "lora", "`run1`"], ["#0", "full", "`run0`"]]
    assert table.rows[0][3:] == ["0.6000", "10,000"]
    pareto_section(details, tmp_path, study)
    assert (tmp_path / "pareto.png").stat().st_size > 10_000
    missing = optuna_pareto_section(details, None, "the study file x is not on this machine")
    assert "not on this machine" in missing.blocks[0]


# --- one small real sweep through Ray, Optuna and a SQLite MLflow store ---

# Three trials, TPE on two objectives; TPE's random start-up picks adapter, lora, adapter.
PARETO = {"data.sample": 200, "data.max_length": 64, "defaults.adapter.bottleneck": 16,
          "search": {"method": {"choice": ["lora", "adapter"]}, "lr": {"loguniform": [3.0e-4, 3.0e-3]}},
          "sweep.trials": 3, "sweep.searcher": "tpe",
          "sweep.objectives": [{"metric": "auc", "mode": "max"}, {"metric": "trainable_params", "mode": "min"}]}


@pytest.mark.slow
def test_multi_objective_sweep_records_two_values_and_reports_the_pareto_set(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "tiny-pareto", PARETO)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    summary = last_json(sweeper("run", str(spec), "--tracking-uri", uri, "--json", cwd=tmp_path))
    assert summary["trials"]["complete"] == 3, summary

    study = optuna.load_study(study_name=summary["sweep_id"],
                              storage=f"sqlite:///{tmp_path}/results/{summary['sweep_id']}/optuna.db")
    assert study.directions == [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE]
    assert study.metric_names == ["auc", "trainable_params"]
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 3 and all(len(t.values) == 2 for t in complete)

    client = MlflowClient(uri)
    parent = client.get_run(summary["parent_run_id"])
    assert parent.data.tags["sweeper.objectives"] == "auc:max,trainable_params:min"
    children = trial_runs(uri, parent.info.run_id)
    by_number = {int(run.data.tags["optuna.trial"]): run for run in children}
    assert {run.data.tags["sweeper.method"] for run in children} == {"lora", "adapter"}
    for trial in complete:  # the study holds what MLflow logged: the best auc and the trainable parameters
        run = by_number[trial.number]
        assert trial.values == pytest.approx([run.data.metrics["best_auc"], run.data.metrics["trainable_params"]])
    pareto = json.loads(Path(client.download_artifacts(parent.info.run_id, "pareto.json", str(tmp_path))).read_text())
    assert sorted(t["number"] for t in pareto["trials"]) == sorted(t.number for t in study.best_trials)
    assert summary["best_run_id"] in {t["run_id"] for t in pareto["trials"]}

    report = sweeper("report", "--tracking-uri", uri, "--out", str(tmp_path / "report"), cwd=tmp_path)
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Pareto set (Optuna)" in text and "| trial | method | run | auc (max) | trainable_params (min) |" in text
    for trial in study.best_trials:
        assert f"| #{trial.number} |" in text
    assert (tmp_path / "report" / "pareto.png").is_file()
