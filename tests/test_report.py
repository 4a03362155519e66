"""`sweeper report`: tables that match the MLflow runs, real PNGs, a self-contained HTML, the report in the
parent run's artifacts and in the MLflow UI (headless Chromium); the decision between methods and baselines, with
the baseline and repeat runs the tiny sweep logged; plus unit tests of the comparisons and the decision."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import pytest
from mlflow import MlflowClient
from PIL import Image
from ray.tune.search import Searcher
from scipy import stats
from sklearn.metrics import roc_auc_score

from harness import markdown_table as table
from harness import sweeper
from services import MlflowServer
from sweeper.metrics.text import sentence_bleu
from sweeper.report.analysis import pareto_front, sweep_totals
from sweeper.report.document import Document, Image as DocImage, Section, Table
from sweeper.report.figures import AxisScale
from sweeper.report.sections import decision_section
from sweeper.report.verdict import verdict
from sweeper.spec import parse_spec
from sweeper.sweep.followups import RepeatSearcher, plan_repeats
from sweeper.predictions import Predictions
from sweeper.recorded.sweeps import SweepDetails, SweepRecord, TrialRun
from tiny_sweep import TinySweep, tiny_sweep

ARTIFACTS = Path(__file__).parent / "artifacts"
FIGURES = ("pareto.png", "curves.png", "parallel.png")


@pytest.fixture(scope="module")
def sweep(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> TinySweep:
    return tiny_sweep(mlflow_server.uri, tmp_path_factory.mktemp("tiny-sweep"))


@pytest.fixture(scope="module")
def report(sweep: TinySweep, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`sweeper report SWEEP --out DIR` on the tiny sweep."""
    out = tmp_path_factory.mktemp("report")
    done = sweeper("report", sweep.sweep_id, "--out", str(out), "--tracking-uri", sweep.uri, cwd=sweep.workdir)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


@pytest.mark.slow
def test_best_trial_per_method_matches_the_mlflow_runs(sweep: TinySweep, report: Path) -> None:
    markdown = (report / "report.md").read_text()
    rows = {row["method"]: row for row in table(markdown, "Best trial per method") if row["trial"] != "baseline"}
    completed = {run.data.tags["sweeper.method"] for run in sweep.trial_runs() if run.data.tags["sweeper.state"] == "complete"}
    assert set(rows) == completed == {"full", "adapter", "lora"}
    for method, row in rows.items():
        best = sweep.best_run(method)
        assert row["run"] == f"`{best.info.run_id}`"
        assert row["best auc"] == f"{best.data.metrics['best_auc']:.4f}"
        assert row["best f1"] == f"{best.data.metrics['best_f1']:.4f}"
        assert row["trainable params"] == f"{int(best.data.metrics['trainable_params']):,}"
        assert row["peak memory"] == f"{best.data.metrics['peak_memory_mb']:,.0f} MB"
        assert row["compute"].endswith("CPU-h") and float(row["compute"].split()[0]) == pytest.approx(
            best.data.metrics["compute_seconds"] / 3600, abs=1e-4)
        size = sum(item.file_size or 0 for item in walk(MlflowClient(sweep.uri), best.info.run_id))
        assert size > 10_000 and row["artifacts"].endswith(("KB", "MB"))
    assert rows["full"]["% of backbone"] == "100.00%"
    assert float(rows["lora"]["% of backbone"].rstrip("%")) < 5 and float(rows["adapter"]["% of backbone"].rstrip("%")) < 5


@pytest.mark.slow
def test_best_adapter_per_placement_matches_the_mlflow_runs(sweep: TinySweep, report: Path) -> None:
    rows = {row["placement"]: row for row in table((report / "report.md").read_text(), "Best adapter trial per placement")}
    adapters = [run for run in sweep.trial_runs() if run.data.tags["sweeper.method"] == "adapter"
                and run.data.tags["sweeper.state"] == "complete"]
    assert set(rows) == {run.data.params["adapter.placement"] for run in adapters} == {"ffn", "parallel"}
    for placement, row in rows.items():
        best = max((run for run in adapters if run.data.params["adapter.placement"] == placement),
                   key=lambda run: run.data.metrics["best_auc"])
        assert row["run"] == f"`{best.info.run_id}`" and row["best auc"] == f"{best.data.metrics['best_auc']:.4f}"


def walk(client: MlflowClient, run_id: str, path: str | None = None) -> list:
    items = []
    for item in client.list_artifacts(run_id, path):
        items.extend(walk(client, run_id, item.path) if item.is_dir else [item])
    return items


@pytest.mark.slow
def test_totals_count_the_trials_and_the_compute_pruning_saved(sweep: TinySweep, report: Path) -> None:
    markdown = (report / "report.md").read_text()
    totals = {row["trials / compute"]: row["value"] for row in table(markdown, "Sweep totals")}
    states = [run.data.tags["sweeper.state"] for run in sweep.trial_runs()]
    for state in ("complete", "pruned", "failed"):
        assert totals[state] == str(states.count(state))
    spent = sum(run.data.metrics.get("compute_seconds", 0.0) for run in sweep.trial_runs()) / 3600
    assert float(totals["compute spent"].split()[0]) == pytest.approx(spent, abs=1e-4)
    trials = {row["#"]: row for row in table(markdown, "All trials")}
    assert len(trials) == 7
    pruned = [row for row in trials.values() if row["state"] == "pruned"]
    saved = float(totals["compute saved by pruning (estimate)"].split()[0])
    if pruned:  # cut after their first evaluation of two
        assert all(row["epochs"] == "1" and row["best auc"] == "-" for row in pruned)
        assert saved > 0 and f"({len(pruned)} epochs not run)" in totals["compute saved by pruning (estimate)"]
    else:
        assert saved == 0


@pytest.mark.slow
def test_pngs_are_real_figures(report: Path) -> None:
    for name in FIGURES:
        path = report / name
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width >= 600 and image.height >= 300
            assert len(image.convert("RGB").getcolors(maxcolors=1_000_000) or []) > 50  # drawn, not blank
        assert path.stat().st_size > 15_000


@pytest.mark.slow
def test_html_embeds_every_figure(report: Path) -> None:
    page = (report / "report.html").read_text()
    images = re.findall(r'<img [^>]*src="([^"]+)"', page)
    pngs = sorted(report.glob("*.png"))
    assert len(images) == len(pngs) >= len(FIGURES)
    assert all(src.startswith("data:image/png;base64,") for src in images)
    embedded = {base64.b64decode(src.split(",", 1)[1]) for src in images}
    assert embedded == {path.read_bytes() for path in pngs}
    assert "<table>" in page and "Best trial per method" in page


@pytest.mark.slow
def test_importances_come_from_the_optuna_study(report: Path) -> None:
    markdown = (report / "report.md").read_text()
    section = markdown.split("## Hyper-parameters\n", 1)[1].split("\n## ", 1)[0]
    rows = {row["parameter"]: row for row in table(markdown, "Hyper-parameters")}
    assert {"method", "lr"} <= set(rows) and "importance.png" in section
    assert sum(float(row["all"]) for row in rows.values() if row["all"] != "-") == pytest.approx(1.0, abs=0.01)


@pytest.mark.slow
def test_report_is_logged_to_the_parent_run(sweep: TinySweep, report: Path) -> None:
    client = MlflowClient(sweep.uri)
    logged = {Path(item.path).name for item in client.list_artifacts(sweep.parent_run_id, "report")}
    assert {"report.md", "report.html", *FIGURES} <= logged
    copy = Path(client.download_artifacts(sweep.parent_run_id, "report/report.md", str(report.parent / "download")))
    assert copy.read_text() == (report / "report.md").read_text()


@pytest.mark.slow
def test_mlflow_ui_lists_and_renders_the_report(sweep: TinySweep, report: Path, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    page = f"{sweep.uri}/#/experiments/{sweep.experiment_id}/runs/{sweep.parent_run_id}/artifacts"
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1000", "--virtual-time-budget=15000"]
    ARTIFACTS.mkdir(exist_ok=True)
    for url, name in ((page, "mlflow-report-artifacts.png"), (f"{page}/report/report.md", "mlflow-report-md.png")):
        screenshot = ARTIFACTS / name
        shot = subprocess.run([*flags, f"--screenshot={screenshot}", url], capture_output=True, text=True, timeout=180)
        assert shot.returncode == 0 and screenshot.stat().st_size > 10_000, shot.stderr[-2000:]
        print(f"MLflow UI screenshot: {screenshot}")
    dom = subprocess.run([*flags, "--dump-dom", page], capture_output=True, text=True, timeout=180).stdout
    assert sweep.sweep_id in dom
    assert re.search(r">\s*report\s*<", dom), "the artifact tree shows no 'report' folder"
    assert "spec.yaml" in dom
    preview = subprocess.run([*flags, "--dump-dom", f"{page}/report/report.md"], capture_output=True, text=True,
                             timeout=180).stdout
    assert "Best trial per method" in preview and "report.html" in preview  # the Markdown, rendered by the UI


def predictions_csv(client: MlflowClient, run_id: str, folder: Path) -> list[list[str]]:
    """A run's predictions.csv rows (header first)."""
    path = Path(client.download_artifacts(run_id, "predictions.csv", str(folder / run_id)))
    return [line.split(",") for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_baselines_and_repeats_are_child_runs_apart_from_the_trials(sweep: TinySweep, tmp_path: Path) -> None:
    client = MlflowClient(sweep.uri)
    roles = [run.data.tags["sweeper.role"] for run in sweep.trial_runs(None)]
    assert sorted(roles) == sorted(["trial"] * 7 + ["baseline"] * 2 + ["repeat"] * 3)
    assert sum(sweep.summary["trials"].values()) == 7  # counts, the parent's metrics and Optuna: trials only
    parent = client.get_run(sweep.parent_run_id)
    assert sum(parent.data.metrics[f"trials_{state}"] for state in ("complete", "pruned", "failed", "killed")) == 7
    study = optuna.load_study(study_name=sweep.sweep_id,
                              storage=f"sqlite:///{sweep.workdir / 'results' / sweep.sweep_id / 'optuna.db'}")
    assert len(study.trials) == 7

    best = sweep.best_run()
    trial_rows = predictions_csv(client, best.info.run_id, tmp_path)
    baselines = {run.data.tags["sweeper.baseline"]: run for run in sweep.trial_runs("baseline")}
    assert set(baselines) == {"lapredict", "expert_lr"} == set(sweep.summary["baselines"])
    for name, run in baselines.items():
        assert run.info.run_name == name and run.info.status == "FINISHED"
        assert run.data.tags["sweeper.state"] == "complete" and run.data.tags["sweeper.sweep"] == sweep.sweep_id
        metrics = run.data.metrics
        assert metrics["auc_ci_low"] <= metrics["best_auc"] <= metrics["auc_ci_high"]
        assert {"best_f1", "best_mcc", "trainable_params", "train_seconds"} <= set(metrics)
        assert run.data.params["data.split.kind"] == "time" and run.data.params["data.sample"] == "200"
        rows = predictions_csv(client, run.info.run_id, tmp_path)
        assert [row[:2] for row in rows] == [row[:2] for row in trial_rows]  # same commits, same labels, same order

    repeats = sweep.trial_runs("repeat")
    assert {run.data.tags["sweeper.method"] for run in repeats} == {"full", "adapter", "lora"}
    for run in repeats:
        repeated = client.get_run(run.data.tags["sweeper.repeat_of"])
        method = repeated.data.tags["sweeper.method"]
        assert repeated.data.metrics["best_auc"] == sweep.best_run(method).data.metrics["best_auc"]
        assert run.data.tags["sweeper.repeat_of_trial"] == repeated.data.tags["optuna.trial"]
        assert "optuna.trial" not in run.data.tags and run.data.tags["sweeper.state"] == "complete"
        assert run.info.run_name == f"repeat-{int(repeated.data.tags['optuna.trial']):03d}-{method}-seed1"
        assert (run.data.params["seed"], run.data.params["data.seed"]) == ("1", "0")
        same = {key: value for key, value in run.data.params.items() if key not in ("seed", "data.seed")}
        assert same == {key: value for key, value in repeated.data.params.items() if key not in ("seed", "data.seed")}
        assert {"model", "predictions.csv"} <= {item.path for item in client.list_artifacts(run.info.run_id)}
        assert [row[0] for row in predictions_csv(client, run.info.run_id, tmp_path)] == [row[0] for row in trial_rows]


@pytest.mark.slow
def test_best_shows_the_baselines_as_rows_after_the_ranking(sweep: TinySweep) -> None:
    out = sweeper("best", sweep.sweep_id, "--json", "--tracking-uri", sweep.uri, cwd=sweep.workdir)
    rows = json.loads(out.stdout)["runs"]
    roles = [row["role"] for row in rows]
    assert roles == ["trial"] * roles.count("trial") + ["baseline"] * 2
    assert rows[0]["run_id"] == sweep.summary["best_run_id"]
    assert {row["method"] for row in rows[-2:]} == {"lapredict", "expert_lr"}
    assert rows[-2]["auc"] >= rows[-1]["auc"] and all(row["metrics"]["auc_ci_low"] <= row["auc"] for row in rows[-2:])
    text = sweeper("best", sweep.sweep_id, "--tracking-uri", sweep.uri, cwd=sweep.workdir).stdout
    assert "baseline: lapredict" in text and "baseline: expert_lr" in text


@pytest.mark.slow
def test_report_decides_each_pair_with_intervals_and_shows_baselines(sweep: TinySweep, report: Path) -> None:
    markdown = (report / "report.md").read_text()
    titles = re.findall(r"^## (.+)$", markdown, re.M)
    assert titles[:3] == ["Verdict", "Effects of the searched factors", "Decision"]
    section = markdown.split("## Decision\n", 1)[1].split("\n## ", 1)[0]
    auc = {method: sweep.best_run(method).data.metrics["best_auc"] for method in ("full", "adapter", "lora")}
    baselines = {run.data.tags["sweeper.baseline"]: run.data.metrics["best_auc"]
                 for run in sweep.trial_runs("baseline")}
    best_baseline = max(baselines, key=baselines.get)
    auc[f"{best_baseline} (baseline)"] = baselines[best_baseline]
    methods = sorted(("full", "adapter", "lora"), key=lambda m: -auc[m])
    pairs = [(a, b) for i, a in enumerate(methods) for b in methods[i + 1:]]
    pairs += [(method, f"{best_baseline} (baseline)") for method in methods]
    sentence = re.compile(r"^(.+) vs (.+): AUC ([+-]\d\.\d{3}) \[([+-]\d\.\d{3}), ([+-]\d\.\d{3})\]: "
                          r"(no clear difference|.+ is better)$", re.M)
    found = {(m[1], m[2]): m for m in sentence.finditer(section)}
    assert {frozenset(pair) for pair in found} == {frozenset(pair) for pair in pairs} and len(found) == 6, section
    for (a, b), match in found.items():
        assert auc[a] >= auc[b] or b.endswith("(baseline)")  # the better method first, the baseline second
        value, low, high = (float(match[i]) for i in (3, 4, 5))
        assert value == pytest.approx(auc[a] - auc[b], abs=5e-4)  # the paired difference, read from predictions.csv
        assert low <= value <= high
        assert (match[6] == "no clear difference") == (low <= 0 <= high)
    top = next(match for (a, b), match in found.items() if a == methods[0] and b.endswith("(baseline)"))
    verdict = markdown.split("## Verdict\n\n**", 1)[1].split("**", 1)[0]
    if top[6] == f"{methods[0]} is better":  # the verdict claims what the best trial's paired interval says
        assert verdict.startswith("A fine-tuned configuration beats the best baseline: "), verdict
    elif top[6].startswith(best_baseline):
        assert verdict.startswith(f"The best baseline, {best_baseline} (AUC {baselines[best_baseline]:.3f} ["), verdict
    else:
        assert verdict.startswith(("No fine-tuned configuration resolvably beats the best baseline, ",
                                   "Nothing in this sweep is resolvable: ")), verdict
    assert "scores above the best baseline" not in markdown
    rows = {row["method"]: row for row in table(markdown, "Decision")}
    assert {"lapredict (baseline)", "expert_lr (baseline)"} <= set(rows)
    for method in methods:
        assert rows[method]["repeats (seeds)"] == "1 (1)"
        repeat = next(run for run in sweep.trial_runs("repeat") if run.data.tags["sweeper.method"] == method)
        assert rows[method]["mean ± sd over repeats"] == f"{repeat.data.metrics['best_auc']:.3f}"
    best_rows = [row for row in table(markdown, "Best trial per method") if row["trial"] == "baseline"]
    assert {row["method"] for row in best_rows} == {"lapredict (baseline)", "expert_lr (baseline)"}
    assert all(row["auc 95 % interval"].startswith("[") for row in best_rows)
    assert "## Repeats" in markdown and "| repeats | 3 complete |" in markdown


# --- fast unit tests of the comparisons and the document ---

def trial(number: int, method: str, value: float | None, params: float, seconds: float, state: str = "complete",
          epochs: float = 2.0, compute: float = 100.0) -> TrialRun:
    metrics = {"trainable_params": params, "train_seconds": seconds, "compute_seconds": compute, "epoch": epochs}
    if value is not None:
        metrics["best_auc"] = value
    return TrialRun(f"run{number}", f"trial-{number}", number, method, state, {"epochs": "2", "method": method},
                    metrics, [(float(e + 1), 0.5) for e in range(int(epochs))], 1000, 0.0, 1.0)


def details(trials: list[TrialRun]) -> SweepDetails:
    return SweepDetails(SweepRecord("s", "p", "0", "auc", "max"), "tiny", {}, {}, None, trials)


def test_pareto_front_keeps_only_trials_nothing_beats_on_both() -> None:
    trials = [trial(0, "full", 0.70, 1e6, 50), trial(1, "lora", 0.68, 1e4, 20), trial(2, "adapter", 0.60, 5e4, 30),
              trial(3, "lora", 0.69, 2e4, 25), trial(4, "lora", 0.65, 1e4, 10)]
    assert [t.number for t in pareto_front(trials, "auc", "max", "trainable_params")] == [1, 3, 0]
    assert [t.number for t in pareto_front(trials, "auc", "max", "train_seconds")] == [4, 1, 3, 0]
    assert [t.number for t in pareto_front(trials, "auc", "min", "trainable_params")] == [4, 2]


def test_pruning_saves_the_epochs_not_run_at_the_methods_seconds_per_epoch() -> None:
    trials = [trial(0, "lora", 0.7, 1e4, 10, compute=100.0), trial(1, "lora", 0.6, 1e4, 10, compute=60.0),
              trial(2, "lora", None, 1e4, 10, state="pruned", epochs=1.0, compute=40.0),
              trial(3, "full", 0.7, 1e6, 10, compute=400.0)]
    totals = sweep_totals(details(trials))
    per_epoch = (50.0 + 30.0 + 40.0) / 3  # lora trials: compute seconds over epochs
    assert totals.counts == {"complete": 3, "pruned": 1, "failed": 0, "killed": 0}
    assert totals.compute == {"CPU-h": pytest.approx(600.0 / 3600)}
    assert totals.saved == {"CPU-h": pytest.approx(per_epoch / 3600)} and totals.epochs_saved == 1.0


def test_axis_scale_places_numbers_categories_and_missing_values() -> None:
    lr = AxisScale(["1e-5", "1e-3", None])
    assert lr.log and lr.position("1e-4") == pytest.approx(0.5) and lr.position(None) < 0
    assert [text for _, text in lr.ticks()] == ["1e-05", "0.0001", "0.001", "n/a"]
    method = AxisScale(["lora", "full", "adapter"])
    assert [method.position(m) for m in ("adapter", "full", "lora")] == [0.0, 0.5, 1.0]
    assert AxisScale(["8"]).position("8") == 0.5


def test_document_renders_markdown_and_self_contained_html(tmp_path: Path) -> None:
    png = tmp_path / "fig.png"
    Image.new("RGB", (4, 4), "red").save(png)
    doc = Document("T", [Section("S", ["Use `x` **now**.", Table(["a", "b"], [["1", "x|y"]]), DocImage(png, "cap")])])
    assert "| 1 | x\\|y |" in doc.markdown() and "![cap](fig.png)" in doc.markdown()
    page = doc.html()
    assert "<code>x</code> <strong>now</strong>" in page
    assert base64.b64encode(png.read_bytes()).decode() in page


# --- the decision section, on sweeps built by hand ---

def scored(labels: list[int], scores: list[float]) -> Predictions:
    return Predictions(("id", "label", "score"),
                       {f"c{i}": (str(y), repr(s)) for i, (y, s) in enumerate(zip(labels, scores))})


def messages(references: list[str], predictions: list[str]) -> Predictions:
    return Predictions(("id", "reference", "prediction"),
                       {f"c{i}": (r, p) for i, (r, p) in enumerate(zip(references, predictions))})


def contender(name: str, method: str, metrics: dict[str, float], role: str = "trial", repeat_of: str = "",
              seed: int = 0, number: int = 0) -> TrialRun:
    return TrialRun(f"run-{name}", name, number, method, "complete", {"seed": str(seed), "method": method}, metrics,
                    role=role, repeat_of=repeat_of)


def validation_set(seed: int = 0, n: int = 300) -> tuple[list[int], np.random.Generator]:
    rng = np.random.default_rng(seed)
    return [int(v) for v in rng.random(n) < 0.1], rng


def noisy(labels: list[int], rng: np.random.Generator, signal: float) -> list[float]:
    """Scores in (0, 1) that separate the classes by `signal` standard deviations."""
    return [float(1 / (1 + np.exp(-(signal * y + rng.normal())))) for y in labels]


def sweep_of(runs: dict[str, tuple[TrialRun, Predictions | None]], repeats: list[TrialRun] = (),
             metric: str = "auc") -> SweepDetails:
    trials = [run for run, _ in runs.values() if run.role == "trial"]
    baselines = [run for run, _ in runs.values() if run.role == "baseline"]
    predictions = {run.run_id: found for run, found in runs.values() if found is not None}
    return SweepDetails(SweepRecord("s", "p", "0", metric, "max" if metric != "eval_loss" else "min"), "x", {}, {},
                        None, trials, baselines, list(repeats), predictions)


def with_auc(name: str, method: str, labels: list[int], scores: list[float],
             role: str = "trial") -> tuple[TrialRun, Predictions]:
    """A contender whose logged best_auc is scikit-learn's AUC of its predictions (and a made-up interval)."""
    auc = roc_auc_score(labels, scores)
    return contender(name, method, {"best_auc": auc, "auc_ci_low": auc - 0.1, "auc_ci_high": min(auc + 0.1, 1.0)},
                     role), scored(labels, scores)


def test_decision_says_plainly_when_no_trial_beats_the_best_baseline() -> None:
    labels, rng = validation_set()
    runs = {"full": with_auc("trial-001-full", "full", labels, noisy(labels, rng, 0.3)),
            "lora": with_auc("trial-002-lora", "lora", labels, noisy(labels, rng, 0.5)),
            "lapredict": with_auc("lapredict", "lapredict", labels, noisy(labels, rng, 3.0), "baseline"),
            "expert_lr": with_auc("expert_lr", "expert_lr", labels, noisy(labels, rng, 1.5), "baseline")}
    section = decision_section(sweep_of(runs))
    text = "\n".join(block for block in section.blocks if isinstance(block, str))
    base = runs["lapredict"][0].metrics
    assert verdict(sweep_of(runs)).sentences[0].startswith(
        f"The best baseline, lapredict (AUC {base['best_auc']:.3f} [{base['auc_ci_low']:.3f}, "
        f"{base['auc_ci_high']:.3f}]), beats every fine-tuned configuration")
    auc = {name: run.metrics["best_auc"] for name, (run, _) in runs.items()}
    first, second = sorted(("full", "lora"), key=lambda m: -auc[m])
    assert f"{first} vs {second}: AUC {auc[first] - auc[second]:+.3f} [" in text
    for method in ("full", "lora"):  # against the best baseline only, which is far better here
        difference = re.escape(f"{auc[method] - auc['lapredict']:+.3f}")
        assert re.search(rf"^{method} vs lapredict \(baseline\): AUC {difference} "
                         rf"\[-\d\.\d{{3}}, -\d\.\d{{3}}\]: lapredict \(baseline\) is better$", text, re.M), text
    assert "expert_lr (baseline):" not in text
    rows = {row[0]: row for block in section.blocks if isinstance(block, Table) for row in block.rows}
    shown = f"{base['best_auc']:.3f} [{base['auc_ci_low']:.3f}, {base['auc_ci_high']:.3f}]"
    assert rows["lapredict (baseline)"][2] == shown
    assert "No repeats: set `sweep.repeats: N`" in text


def test_decision_names_the_trial_that_beats_the_baseline() -> None:
    labels, rng = validation_set(1)
    runs = {"lora": with_auc("trial-000-lora", "lora", labels, noisy(labels, rng, 3.0)),
            "lapredict": with_auc("lapredict", "lapredict", labels, noisy(labels, rng, 0.5), "baseline")}
    text = "\n".join(block for block in decision_section(sweep_of(runs)).blocks if isinstance(block, str))
    assert verdict(sweep_of(runs)).sentences[0].startswith("A fine-tuned configuration beats the best baseline: "
                                                            "trial-000-lora (lora) beats lapredict (AUC ")
    assert re.search(r"^lora vs lapredict \(baseline\): AUC \+\d\.\d{3} \[\+\d\.\d{3}, \+\d\.\d{3}\]: lora is better$",
                     text, re.M)


def test_repeats_give_mean_sd_interval_and_welch_per_pair() -> None:
    labels, rng = validation_set(2)
    runs = {"full": with_auc("trial-000-full", "full", labels, noisy(labels, rng, 1.0)),
            "lora": with_auc("trial-001-lora", "lora", labels, noisy(labels, rng, 1.2))}
    seeds = {"full": [0.70, 0.74, 0.72], "lora": [0.64, 0.66, 0.65]}
    repeats = [contender(f"repeat-{method}-{seed}", method, {"best_auc": value}, "repeat",
                         f"run-{runs[method][0].name}", seed)
               for method, values in seeds.items() for seed, value in enumerate(values, start=1)]
    section = decision_section(sweep_of(runs, repeats))
    text = "\n".join(block for block in section.blocks if isinstance(block, str))
    welch = stats.ttest_ind(seeds["lora"], seeds["full"], equal_var=False)
    first = "lora" if runs["lora"][0].metrics["best_auc"] > runs["full"][0].metrics["best_auc"] else "full"
    a, b = (first, "full" if first == "lora" else "lora")
    p = f"{welch.pvalue:.2f}" if welch.pvalue >= 0.01 else f"{welch.pvalue:.0e}"
    difference = re.escape(f"{np.mean(seeds[a]) - np.mean(seeds[b]):+.3f}")
    assert re.search(rf"^{a} vs {b}: AUC .+; over 3 seeds {difference} ± \d\.\d{{3}} \(s\.e\.\), Welch p = {p}$",
                     text, re.M), text
    rows = {row[0]: row for block in section.blocks if isinstance(block, Table) for row in block.rows}
    for method, values in seeds.items():
        low, high = stats.t.interval(0.95, 2, loc=np.mean(values), scale=stats.sem(values))
        assert rows[method][3:] == ["3 (1, 2, 3)", f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}",
                                    f"[{low:.3f}, {high:.3f}]"]


def test_a_method_whose_trials_were_all_pruned_is_named_not_left_out() -> None:
    labels, rng = validation_set(3)
    runs = {"full": with_auc("trial-000-full", "full", labels, noisy(labels, rng, 1.0))}
    for number, state in enumerate(["pruned", "pruned", "failed"], start=1):
        trial = contender(f"trial-00{number}-lora", "lora", {}, number=number)
        runs[trial.name] = (replace(trial, state=state), None)
    text = "\n".join(block for block in decision_section(sweep_of(runs)).blocks if isinstance(block, str))
    assert "lora: no completed trial (1 failed, 2 pruned), so it is not compared." in text
    assert "full: no completed trial" not in text


def test_old_sweep_without_baselines_repeats_or_predictions_still_decides_what_it_can() -> None:
    runs = {"full": (contender("trial-000-full", "full", {"best_auc": 0.7}), None),
            "lora": (contender("trial-001-lora", "lora", {"best_auc": 0.6}, number=1), None)}
    text = "\n".join(block for block in decision_section(sweep_of(runs)).blocks if isinstance(block, str))
    assert "full vs lora: no predictions to pair" in text
    assert "No paired interval for full (`run-trial-000-full`), lora (`run-trial-001-lora`)" in text
    assert "No baselines in this sweep" in text and "No repeats" in text and "No fine-tuned trial beats" not in text


def test_message_generation_is_decided_on_bleu_of_the_same_commits() -> None:
    references = ["fix typo in readme", "add test for parser", "bump version", "remove dead code", "update docs"] * 8
    good = list(references)
    bad = [reference.split()[0] for reference in references]
    runs = {"lora": (contender("trial-000-lora", "lora", {"best_eval_loss": 1.0}), messages(references, good)),
            "full": (contender("trial-001-full", "full", {"best_eval_loss": 2.0}, number=1), messages(references, bad))}
    section = decision_section(sweep_of(runs, metric="eval_loss"))
    text = "\n".join(block for block in section.blocks if isinstance(block, str))
    gain = np.mean([sentence_bleu(r, g) - sentence_bleu(r, b) for r, g, b in zip(references, good, bad)])
    expected = re.escape(f"{gain:+.3f}")
    assert re.search(rf"^lora vs full: BLEU {expected} \[\+[\d.]+, \+[\d.]+\]: lora is better$", text, re.M), text


def test_repeat_searcher_hands_out_the_jobs_then_finishes() -> None:
    spec = parse_spec({"name": "x", "sweep": {"repeats": 2}, "defaults": {"seed": 4},
                       "search": {"method": {"choice": ["lora", "full"]}}}, "x")
    jobs = plan_repeats(spec, [("a", 3, "lora"), ("b", 5, "full")], {3: {"method": "lora"}, 5: {"method": "full"}},
                        done={("b", 6)})
    assert [(job.run_id, job.seed, job.values["data.seed"]) for job in jobs] == [("a", 5, 4), ("a", 6, 4), ("b", 5, 4)]
    searcher = RepeatSearcher(jobs, "auc", "max")
    given = [searcher.suggest(f"t{i}") for i in range(4)]
    assert [g["repeat_of"] for g in given[:3]] == ["a", "a", "b"] and given[3] == Searcher.FINISHED
    assert given[2] == {"values": {"method": "full", "seed": 5, "data.seed": 4}, "optuna_trial": 5, "repeat_of": "b"}
    searcher.on_trial_complete("t0", {"auc": 0.61})
    searcher.on_trial_complete("t1", {"auc": float("nan"), "failure": "TrialFailed: loss is nan"})  # as the trainable
    assert (searcher.state_of("t0"), searcher.state_of("t1")) == ("complete", "failed")
