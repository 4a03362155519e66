"""Hostile input to the read side: `predict` on a huge diff, binary patches, bytes that are not UTF-8 and empty
input; `reproduce` of a run whose params were edited into invalid values; `report` of a sweep whose runs were
partly deleted. Each is a clear error line (exit 2) or a result that says what it lacks, never a traceback.

The trained run is the session's tiny sweep (`tiny_sweep.py`); runs to edit or delete are copies of it.
"""

from __future__ import annotations

import io
import json
import sys
import uuid
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, ViewType

from services import MlflowServer
from sweeper.backbone import load_tokenizer
from sweeper.cli import main
from sweeper.data.diff import ADD_MARKER, DEL_MARKER, parse_diff
from sweeper.data.encoding import encode_commits, leading_ids, marker_ids, share_budget, token_ids
from sweeper.data.records import CommitRecord
from sweeper.tracking.schema import SPEC_FILE
from tiny_sweep import TinySweep, tiny_sweep

HEADER = "commit 3f2a9c1d\nAuthor: A <a@b.c>\nDate:   Mon Nov 25 10:15:00 2024 +0100\n\n    {message}\n\n"
TEXT_CHANGE = ("diff --git a/src/Account.java b/src/Account.java\n--- a/src/Account.java\n+++ b/src/Account.java\n"
               "@@ -3,1 +3,3 @@\n-        balance -= amount;\n"
               "+        if (amount > balance) throw new IllegalStateException();\n+        balance -= amount;\n")
BINARY_CHANGE = ("diff --git a/logo.png b/logo.png\nindex 1b2c3d4..5e6f7a8 100644\nGIT binary patch\nliteral 1234\n"
                 "zcmV-+1(x~=P)<h;3K|Lk000e1NJLTq000;O002k`1^@s6;&<+b00009a7bBm000XU\n\nliteral 0\n"
                 "HcmV?d00001\n\n")


@pytest.fixture(scope="module")
def sweep(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> TinySweep:
    return tiny_sweep(mlflow_server.uri, tmp_path_factory.mktemp("tiny-sweep"))


def sweeper(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, *args: str,
            stdin: bytes = b"") -> tuple[int, str, str]:
    """`sweeper ARGS` through its entry point in this process, `stdin` as raw bytes: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def probability(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, sweep: TinySweep, text: bytes,
                *args: str) -> tuple[float, str]:
    """P(defect) of the commit in `text` (on stdin) from the tiny sweep's best run, and what predict said on stderr."""
    code, out, err = sweeper(capsys, monkeypatch, "predict", sweep.best_run().info.run_id, *args, "--json",
                             "--tracking-uri", sweep.uri, stdin=text)
    assert code == 0, err
    return json.loads(out)["probability"], err


def test_a_huge_diff_encodes_as_if_tokenised_whole() -> None:
    """The first tokens the model takes come out the same when only prefixes of a 150 KB diff are tokenised."""
    tokenizer = load_tokenizer("embedded", "jitdp")
    lines = [f"{'-+'[i % 3 == 0]}  value_{i} = compute(items[{i}], 'label {i}') + offset;" for i in range(2000)]
    record = CommitRecord(id="x", date=None, message="Regenerate the parser " * 20, diff="@@\n" + "\n".join(lines))
    for max_length, message_tokens in ((64, 16), (512, 64)):
        encoded = encode_commits([record], tokenizer, max_length, message_tokens)[0].input_ids
        changes = parse_diff(record.diff)  # the whole diff tokenised, as before `leading_ids`
        markers = marker_ids(tokenizer, ADD_MARKER), marker_ids(tokenizer, DEL_MARKER)
        budget = max_length - tokenizer.num_special_tokens_to_add(pair=False) - len(markers[0]) - len(markers[1])
        message = token_ids(tokenizer, record.message)[:message_tokens]
        added, removed = share_budget(token_ids(tokenizer, " ".join(changes.added)),
                                      token_ids(tokenizer, " ".join(changes.removed)), budget - len(message))
        whole = tokenizer.build_inputs_with_special_tokens(message + markers[0] + added + markers[1] + removed)
        assert encoded == whole and len(encoded) == max_length
    added = " ".join(changes.added)
    assert len(leading_ids(tokenizer, added, 100)) < len(token_ids(tokenizer, added))  # only a prefix was tokenised


@pytest.mark.slow
def test_huge_diff_is_read_up_to_what_the_model_takes(sweep: TinySweep, capsys: pytest.CaptureFixture,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """32 MB of changed lines (tokenising all of it took about 1 s and 140 MB per MB): the same probability as
    its first 2,000 lines, which hold far more tokens than `max_length`."""
    lines = [f"{'-+'[i % 2]}    total += computeTheTotal(values[{i}], offset) * factor; // line {i}\n"
             for i in range(450_000)]
    head = HEADER.format(message="Vendor the whole library") + "diff --git a/Lib.java b/Lib.java\n@@ -1 +1 @@\n"
    huge = (head + "".join(lines)).encode()
    assert len(huge) > 32 * 2**20
    whole, _ = probability(capsys, monkeypatch, sweep, huge)
    first, _ = probability(capsys, monkeypatch, sweep, (head + "".join(lines[:2000])).encode())
    assert whole == first
    print(f"\n{len(huge) / 2**20:.0f} MB diff: P(defect) {whole:.6f}")


@pytest.mark.slow
def test_binary_patches_are_left_out_and_said_so(sweep: TinySweep, capsys: pytest.CaptureFixture,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    message = HEADER.format(message="Refuse overdrafts, new logo")
    text_only, err = probability(capsys, monkeypatch, sweep, (message + TEXT_CHANGE).encode())
    assert not err
    mixed, err = probability(capsys, monkeypatch, sweep, (message + BINARY_CHANGE + TEXT_CHANGE).encode())
    assert mixed == text_only  # the binary patch is not read as changed lines
    assert "note: commit 3f2a9c1d: 1 binary change left out (the model reads changed text lines only)" in err
    plain = "Binary files a/logo.png and b/logo.png differ\n"
    binary_only, err = probability(capsys, monkeypatch, sweep,
                                   (HEADER.format(message="New logo") + "diff --git a/logo.png b/logo.png\n" + plain
                                    ).encode())
    assert 0.0 <= binary_only <= 1.0 and "1 binary change left out" in err


@pytest.mark.slow
def test_bytes_that_are_not_utf8_are_read_as_unknown_characters_and_said_so(
        sweep: TinySweep, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    latin1 = (HEADER.format(message="Grüße an die Kundschaft") + TEXT_CHANGE.replace(
        "IllegalStateException()", 'IllegalStateException("Kontostand überschritten")')).encode("latin-1")
    from_stdin, err = probability(capsys, monkeypatch, sweep, latin1)
    assert "note: <stdin>: 3 byte sequences are not UTF-8: read as U+FFFD" in err
    path = tmp_path / "commit.diff"
    path.write_bytes(latin1)
    from_file, err = probability(capsys, monkeypatch, sweep, b"", str(path))
    assert from_file == from_stdin and f"note: {path}: 3 byte sequences are not UTF-8" in err


@pytest.mark.parametrize("text, error", [
    (b"", "error: <stdin>: no input: pipe in `git show`, a unified diff or JSON Lines"),
    (b" \n\t\n", "error: <stdin>: no input: pipe in `git show`, a unified diff or JSON Lines"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00", "error: <stdin>: not `git show` output, a unified diff"),
], ids=["empty", "blank", "binary-file"])
def test_no_commit_in_the_input_is_one_error_line(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
                                                  text: bytes, error: str) -> None:
    """Said before any model is fetched (no tracking server needed)."""
    code, out, err = sweeper(capsys, monkeypatch, "predict", "0123abcd", "--tracking-uri", "http://127.0.0.1:9",
                             stdin=text)
    assert code == 2 and not out
    assert err.startswith(error) and len(err.strip().splitlines()) == 1


def copy_run(client: MlflowClient, run, experiment_id: str, tags: dict[str, str | None],
             params: dict[str, str] | None = None) -> str:
    """A new run with `run`'s params (or `params`), tags (`tags` changed; None drops one), every metric's history
    and its status."""
    kept = {key: value for key, value in {**run.data.tags, **tags}.items() if value is not None}
    copy = client.create_run(experiment_id, start_time=run.info.start_time, run_name=run.info.run_name, tags=kept)
    metrics = [Metric(key, m.value, m.timestamp, m.step) for key in run.data.metrics
               for m in client.get_metric_history(run.info.run_id, key)]
    values = run.data.params if params is None else params
    client.log_batch(copy.info.run_id, metrics=metrics, params=[Param(k, v) for k, v in values.items()])
    client.set_terminated(copy.info.run_id, run.info.status, run.info.end_time)
    return copy.info.run_id


@pytest.mark.slow
@pytest.mark.parametrize("key, value, field", [
    ("lr", "fast", "field 'lr': Input should be a valid number"),
    ("lora.rank", "-3", "field 'lora.rank': Input should be greater than or equal to 1 (got -3)"),
    ("lora.rnak", "4", "field 'lora.rnak': unknown key (did you mean 'rank'?"),
], ids=["not-a-number", "out-of-range", "renamed-key"])
def test_reproduce_of_params_edited_into_invalid_values_is_one_error_line(
        sweep: TinySweep, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, key: str, value: str,
        field: str) -> None:
    client = MlflowClient(sweep.uri)
    original = sweep.best_run("lora")
    experiment = client.get_experiment_by_name("hostile-params") or client.create_experiment("hostile-params")
    experiment_id = experiment if isinstance(experiment, str) else experiment.experiment_id
    params = dict(original.data.params) | {key: value}
    run_id = copy_run(client, original, experiment_id, {"mlflow.parentRunId": None}, params)
    code, out, err = sweeper(capsys, monkeypatch, "reproduce", run_id, "--tracking-uri", sweep.uri)
    assert code == 2 and not out
    assert err.startswith(f"error: params of run {run_id}: {field}") and len(err.strip().splitlines()) == 1
    assert "the run's config.json artifact holds the values it ran with" in err


@pytest.mark.slow
def test_report_of_a_sweep_with_deleted_runs_says_what_is_missing(sweep: TinySweep, capsys: pytest.CaptureFixture,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    """A copy of the tiny sweep (its parent run, its trial runs and its Optuna study) whose best run and one
    pruned run are then deleted with MLflow's `delete_run`."""
    client = MlflowClient(sweep.uri)
    sweep_id = f"hostile-report-{uuid.uuid4().hex[:8]}"
    experiment_id = client.create_experiment(sweep_id)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    parent = client.get_run(sweep.parent_run_id)
    optuna.copy_study(from_study_name=sweep.sweep_id, from_storage=parent.data.tags["optuna.storage"],
                      to_storage=storage, to_study_name=sweep_id)
    parent_id = copy_run(client, parent, experiment_id, {"sweeper.sweep": sweep_id, "optuna.storage": storage})
    client.log_artifact(parent_id, client.download_artifacts(sweep.parent_run_id, SPEC_FILE, str(tmp_path)))
    copies = {run.info.run_id: copy_run(client, run, experiment_id, {"sweeper.sweep": sweep_id,
                                                                     "mlflow.parentRunId": parent_id})
              for run in sweep.trial_runs()}
    best = copies[sweep.best_run().info.run_id]
    client.set_tag(parent_id, "sweeper.best_run_id", best)
    pruned = next(copies[run.info.run_id] for run in sweep.trial_runs() if run.data.tags["sweeper.state"] == "pruned")
    deleted = {run_id: int(client.get_run(run_id).data.tags["optuna.trial"]) for run_id in (best, pruned)}
    for run_id in deleted:
        client.delete_run(run_id)

    code, out, err = sweeper(capsys, monkeypatch, "report", sweep_id, "--no-log", "--out", str(tmp_path / "report"),
                             "--tracking-uri", sweep.uri)
    assert code == 0, err
    numbers = ", ".join(map(str, sorted(deleted.values())))
    missing = f"2 of {len(copies)} trials have no run in MLflow (deleted?): Optuna trials {numbers}"
    assert f"note: partial report: {missing}" in err
    report = (tmp_path / "report" / "report.md").read_text()
    assert f"**Partial report**: {missing}; everything below covers the {len(copies) - 2} trial runs found." in report
    assert f"Best run: `{best}` (no longer in MLflow)." in report
    assert pruned not in report
    assert len(client.search_runs([experiment_id], "", ViewType.DELETED_ONLY)) == 2  # what the user did
    print(f"\n{missing}")
