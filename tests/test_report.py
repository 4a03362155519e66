"""`sweeper report`: tables that match the MLflow runs, real PNGs, a self-contained HTML, the report in the
parent run's artifacts and in the MLflow UI (headless Chromium); plus unit tests of the comparisons."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient
from PIL import Image

from harness import markdown_table as table
from harness import sweeper
from services import MlflowServer
from sweeper.report.analysis import pareto_front, sweep_totals
from sweeper.report.document import Document, Image as DocImage, Section, Table
from sweeper.report.figures import AxisScale
from sweeper.tracking.sweeps import SweepDetails, SweepRecord, TrialRun
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
    rows = {row["method"]: row for row in table(markdown, "Best trial per method")}
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
