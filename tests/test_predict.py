"""`sweeper predict` and `sweeper export` on the tiny sweep's runs, and parsing commits from text."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from harness import data_lines, sweeper
from services import MlflowServer
from sweeper.config import TrialConfig
from sweeper.data.commits import parse_commits
from sweeper.data.encoding import encode_commits
from sweeper.data.records import read_records
from sweeper.predictions import read_predictions
from sweeper.tasks.defects import predict
from tiny_sweep import TinySweep, tiny_sweep

JAVA_BEFORE = """public class Account {
    private int balance;

    public void withdraw(int amount) {
        balance -= amount;
    }
}
"""
JAVA_AFTER = JAVA_BEFORE.replace("        balance -= amount;\n", """        if (amount > balance) {
            throw new IllegalArgumentException("insufficient funds");
        }
        balance -= amount;
""")


@pytest.fixture(scope="module")
def sweep(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> TinySweep:
    return tiny_sweep(mlflow_server.uri, tmp_path_factory.mktemp("tiny-sweep"))


@pytest.fixture(scope="module")
def lora_run(sweep: TinySweep):
    run = sweep.best_run("lora")
    if run is None:
        pytest.fail(f"the tiny sweep completed no LoRA trial: {sweep.summary['trials']}")
    return run


def logged(sweep: TinySweep, run_id: str, tmp_path: Path) -> tuple[TrialConfig, list[tuple[str, int, float]]]:
    """The run's logged config and validation predictions."""
    client = MlflowClient(sweep.uri)
    folder = tmp_path / "logged"
    folder.mkdir()
    for name in ("config.json", "predictions.csv"):
        client.download_artifacts(run_id, name, str(folder))
    config = TrialConfig.model_validate_json((folder / "config.json").read_text())
    return config, read_predictions(folder / "predictions.csv").scored


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", "-c", "user.name=Dev", "-c", "user.email=dev@example.com", *args], cwd=cwd,
                          check=True, capture_output=True, text=True).stdout


@pytest.mark.slow
def test_git_show_piped_into_predict_prints_a_probability(sweep: TinySweep, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    git("init", "-q", cwd=repo)
    (repo / "src" / "Account.java").write_text(JAVA_BEFORE)
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "Add account", cwd=repo)
    (repo / "src" / "Account.java").write_text(JAVA_AFTER)
    git("commit", "-q", "-a", "-m", "Refuse withdrawals beyond the balance\n\nThrow instead of going negative.", cwd=repo)
    done = sweeper("predict", sweep.best_run().info.run_id, "--tracking-uri", sweep.uri, cwd=repo,
                   stdin=git("show", "HEAD", cwd=repo), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert 0.0 <= float(done.stdout.strip()) <= 1.0
    print(f"P(defect) of the commit: {done.stdout.strip()}")


@pytest.mark.slow
def test_predict_on_jsonl_gives_the_runs_own_validation_scores(sweep: TinySweep, tmp_path: Path) -> None:
    run_id = sweep.best_run().info.run_id
    config, predictions = logged(sweep, run_id, tmp_path)
    wanted = {id_: score for id_, _, score in predictions[:4]}
    lines = [line for line in data_lines(config.data.path) if json.loads(line)["id"] in wanted]
    data = tmp_path / "commits.jsonl"
    data.write_text("\n".join(lines) + "\n")
    done = sweeper("predict", run_id, str(data), "--json", "--tracking-uri", sweep.uri, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout)
    assert len(rows) == len(wanted) == 4 and all(row["run_id"] == run_id for row in rows)
    for row in rows:
        assert row["probability"] == pytest.approx(wanted[row["id"]], abs=1e-5)


@pytest.mark.slow
def test_exported_merged_lora_gives_the_runs_predictions(sweep: TinySweep, lora_run, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    run_id = lora_run.info.run_id
    out = tmp_path / "merged"
    done = sweeper("export", run_id, str(out), "--merge", "--tracking-uri", sweep.uri, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((out / "sweeper.json").read_text())
    assert manifest["run_id"] == run_id and manifest["format"] == "merged" and manifest["config"]["method"] == "lora"
    assert not (out / "adapter_config.json").exists()
    config, predictions = logged(sweep, run_id, tmp_path)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()  # plain transformers, no PEFT
    tokenizer = AutoTokenizer.from_pretrained(out)
    records = {r.id: r for r in read_records(config.data.path).records}
    items = encode_commits([records[id_] for id_, _, _ in predictions], tokenizer, config.data.max_length,
                           config.data.message_tokens)
    scores, _ = predict(model, items, 64, tokenizer.pad_token_id, torch.device("cpu"))
    assert scores == pytest.approx([score for _, _, score in predictions], abs=1e-5)


@pytest.mark.slow
def test_export_without_merge_is_the_peft_folder(sweep: TinySweep, lora_run, tmp_path: Path) -> None:
    from peft import AutoPeftModelForSequenceClassification

    out = tmp_path / "adapter"
    done = sweeper("export", lora_run.info.run_id, str(out), "--tracking-uri", sweep.uri, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "adapter_config.json").is_file() and (out / "tokenizer.json").is_file()
    model = AutoPeftModelForSequenceClassification.from_pretrained(out, num_labels=2)
    assert sum(p.numel() for n, p in model.named_parameters() if "lora_" in n) > 0
    assert json.loads((out / "sweeper.json").read_text())["metrics"]["best_auc"] == lora_run.data.metrics["best_auc"]


@pytest.mark.slow
def test_export_merge_of_bottleneck_adapters_is_a_clear_error(sweep: TinySweep, tmp_path: Path) -> None:
    adapter = next((run for run in sweep.trial_runs() if run.data.tags["sweeper.method"] == "adapter"), None)
    if adapter is None:
        pytest.skip("the tiny sweep ran no adapter trial")
    done = sweeper("export", adapter.info.run_id, str(tmp_path / "x"), "--merge", "--tracking-uri", sweep.uri,
                   cwd=tmp_path, timeout=300)
    assert done.returncode == 2 and "--merge is not supported for adapter" in done.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_predict_names_a_missing_run(sweep: TinySweep, tmp_path: Path) -> None:
    done = sweeper("predict", "0" * 32, "--tracking-uri", sweep.uri, cwd=tmp_path, stdin="--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n")
    assert done.returncode == 2 and done.stderr.startswith("error: no run 000")


# --- fast: commits from text ---

GIT_SHOW = """commit 3f2a9c1d5e7b8a0f1e2d3c4b5a69788796a5b4c3
Author: Dev <dev@example.com>
Date:   Mon Nov 25 10:15:00 2024 +0100

    Refuse withdrawals beyond the balance

    Throw instead of going negative.

diff --git a/src/Account.java b/src/Account.java
index 1111111..2222222 100644
--- a/src/Account.java
+++ b/src/Account.java
@@ -3,5 +3,8 @@ public class Account {
     public void withdraw(int amount) {
+        if (amount > balance) {
+            throw new IllegalArgumentException();
+        }
         balance -= amount;
-        log(amount);
     }
"""


def test_git_show_output_gives_message_diff_and_date() -> None:
    (record,) = parse_commits(GIT_SHOW)
    assert record.id == "3f2a9c1d5e7b8a0f1e2d3c4b5a69788796a5b4c3"
    assert record.message == "Refuse withdrawals beyond the balance\n\nThrow instead of going negative."
    assert record.diff.startswith("diff --git a/src/Account.java") and "-        log(amount);" in record.diff
    assert record.date == datetime.fromisoformat("2024-11-25T10:15:00+01:00")


def test_git_log_p_gives_one_record_per_commit() -> None:
    two = GIT_SHOW + "\n" + GIT_SHOW.replace("3f2a9c1d", "aaaaaaaa").replace("Refuse", "Allow")
    records = parse_commits(two)
    assert [r.id[:8] for r in records] == ["3f2a9c1d", "aaaaaaaa"]
    assert records[1].message.startswith("Allow")


def test_a_plain_diff_and_jsonl_are_read_too() -> None:
    diff = GIT_SHOW.split("\n\n", 3)[3]
    (record,) = parse_commits(diff)
    assert record.message == "" and record.diff == diff
    line = json.dumps({"id": "c1", "date": "2024-01-02T03:04:05+00:00", "message": "m", "diff": diff, "label": 1})
    records = parse_commits(line + "\n" + line.replace('"c1"', '"c2"') + "\n")
    assert [r.id for r in records] == ["c1", "c2"] and records[0].message == "m"


def test_text_that_is_no_commit_is_a_data_error() -> None:
    from sweeper.errors import DataError

    for text in ("", "hello world\n"):
        with pytest.raises(DataError):
            parse_commits(text)
