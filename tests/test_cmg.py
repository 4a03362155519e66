"""Commit message generation: encoding, the decoder-only loss mask, each method on an encoder-decoder and a
decoder-only backbone, exact reloads, and the spec's metric rules."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from harness import (CMG, SEARCH_SPACES, data_lines, last_json, predict_in_fresh_process, small_trial, sweeper, trial_runs,
                     write_spec)
from sweeper.backbone import load_tokenizer
from sweeper.data.batching import IGNORED_LABEL
from sweeper.data.encoding import encode_for_generation
from sweeper.data.records import read_records
from sweeper.errors import SpecError
from sweeper.spec import load_spec
from sweeper.tasks.messages import MessageGeneration
from sweeper.predictions import read_predictions
from sweeper.tracking.schema import PREDICTIONS_FILE
from sweeper.trial import run_trial

@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A randomly initialised 2-layer GPT-2 with the embedded tokenizer, saved as a local backbone folder."""
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    tokenizer = load_tokenizer("embedded")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=256, n_embd=64, n_layer=2, n_head=2,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_generation_input_is_the_diff_and_the_target_the_cleaned_first_line() -> None:
    tokenizer = load_tokenizer("embedded", "cmg")
    record = next(r for r in read_records("bundled:cmg", "cmg").records if "\n" in r.message.strip())
    item = encode_for_generation([record], tokenizer, 64, 12, "first_line", clean=True)[0]
    first_line = record.message.strip().splitlines()[0]
    assert item.reference == " ".join(first_line.split()) or "#" in first_line
    assert tokenizer.decode(item.target_ids, skip_special_tokens=True).strip().startswith(item.reference.split()[0])
    assert len(item.input_ids) <= 64 and item.input_ids[1] == tokenizer.convert_tokens_to_ids("[ADD]")


def test_decoder_only_loss_covers_the_message_tokens_only(tiny_gpt2: str) -> None:
    config = small_trial("full", "cmg", backbone=tiny_gpt2)
    tokenizer = load_tokenizer(tiny_gpt2)
    task = MessageGeneration(config)
    items = task.encode(read_records("bundled:cmg", "cmg").records[:3], tokenizer)
    task.prepare(items, tokenizer, torch.device("cpu"))
    batch = task.causal_batch(items)
    for row, item in enumerate(items):
        prompt, target = task.prompt(item), task.target(item)
        labels = batch["labels"][row].tolist()
        assert labels[:len(prompt)] == [IGNORED_LABEL] * len(prompt)
        assert labels[len(prompt):len(prompt) + len(target)] == target
        assert set(labels[len(prompt) + len(target):]) <= {IGNORED_LABEL}
        assert target[-1] == tokenizer.eos_token_id


def generated(folder: Path) -> list[dict[str, str]]:
    with (folder / "predictions.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["encoder-decoder", "decoder-only"])
@pytest.mark.parametrize("method", ["full", "adapter", "lora"])
def test_each_method_trains_generates_and_reloads_exactly(kind: str, method: str, tiny_gpt2: str,
                                                           tmp_path: Path) -> None:
    config = small_trial(method, "cmg", epochs=2, backbone="embedded" if kind == "encoder-decoder" else tiny_gpt2)
    reports = []
    result = run_trial(config, tmp_path, reports.append)
    assert [evaluation.metrics["epoch"] for evaluation in reports] == [1.0, 2.0]
    assert all("bleu" not in evaluation.metrics for evaluation in reports)  # scored at the end only
    for key in ("bleu", "corpus_bleu", "rouge_l", "exact_match"):
        assert 0 <= result.metrics[key] <= 100
    assert result.metrics["eval_loss"] == min(evaluation.metrics["eval_loss"] for evaluation in reports)
    rows = generated(tmp_path)
    assert len(rows) > 0 and list(rows[0]) == ["id", "reference", "prediction"]
    assert all(row["reference"] for row in rows)
    if method != "full":
        assert result.costs["trainable_percent"] < 15
    saved = read_predictions(tmp_path / PREDICTIONS_FILE).values
    assert predict_in_fresh_process(tmp_path) == saved == [row["prediction"] for row in rows]


@pytest.mark.slow
def test_scoring_every_evaluation_and_beam_search() -> None:
    result = run_trial(small_trial("lora", "cmg", epochs=2, **{"generation.every": 1, "generation.num_beams": 3,
                                                  "metric": "bleu", "mode": "max"}))
    assert all("bleu" in history and "rouge_l" in history for history in result.history)
    assert result.metrics["bleu"] == max(history["bleu"] for history in result.history)


@pytest.mark.slow
def test_same_config_and_seed_give_identical_messages(tmp_path: Path) -> None:
    run_trial(small_trial("lora", "cmg"), tmp_path / "a")
    run_trial(small_trial("lora", "cmg"), tmp_path / "b")
    assert generated(tmp_path / "a") == generated(tmp_path / "b")


def cmg_spec(tmp_path: Path, generation: dict[str, object] | None = None, **changes: object) -> Path:
    """The harness's CMG spec with top-level keys changed and `defaults.generation` updated."""
    generation = {**CMG["defaults.generation"], **(generation or {})}
    return write_spec(tmp_path, "spec", {**CMG, **changes, "defaults.generation": generation})


@pytest.mark.parametrize("name", ["cmg-smoke.yaml", "cmg-study.yaml"])
def test_cmg_specs_load(name: str) -> None:
    spec = load_spec(SEARCH_SPACES / name)
    assert spec.task == "cmg" and spec.base_trial().task == "cmg"
    assert spec.metric == ("eval_loss" if name == "cmg-smoke.yaml" else "bleu")


def test_a_metric_scored_only_at_the_end_cannot_drive_the_sweep(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"metric.*'bleu' is scored only at the end.*generation.every: 1"):
        load_spec(cmg_spec(tmp_path, metric="bleu", mode="max"))
    assert load_spec(cmg_spec(tmp_path, {"every": 1}, metric="bleu", mode="max")).metric == "bleu"


def test_a_classification_metric_or_a_wrong_mode_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"'auc' is not a cmg metric"):
        load_spec(cmg_spec(tmp_path, metric="auc", mode="max"))
    with pytest.raises(SpecError, match=r"field 'mode'.*lower-is-better"):
        load_spec(cmg_spec(tmp_path, mode="max"))


@pytest.mark.slow
def test_a_cmg_sweep_records_runs_and_reproduces_predictions(mlflow_server, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    spec = write_spec(tmp_path, "tiny-cmg", {**CMG, "defaults": {
        "epochs": 2, "batch_size": 16, "lr": 2.0e-3, "adapter": {"bottleneck": 16}, "lora": {"rank": 4},
        "generation": {"max_new_tokens": 8}}, "search": {"method": {"choice": ["full", "adapter", "lora"]}},
        "sweep.trials": 3, "sweep.searcher": "grid", "sweep.max_concurrent": 2})
    summary = last_json(sweeper("run", str(spec), "--tracking-uri", mlflow_server.uri, "--json", cwd=tmp_path))
    assert summary["trials"]["complete"] == 3
    client = MlflowClient(mlflow_server.uri)
    runs = trial_runs(mlflow_server.uri, summary["parent_run_id"])
    assert sorted(run.data.tags["sweeper.method"] for run in runs) == ["adapter", "full", "lora"]
    for run in runs:
        assert run.info.status == "FINISHED" and run.data.params["task"] == "cmg"
        assert {"best_eval_loss", "best_bleu", "best_rouge_l", "best_exact_match"} <= set(run.data.metrics)
        assert [m.step for m in client.get_metric_history(run.info.run_id, "eval_loss")] == [1, 2]
        folder = tmp_path / run.info.run_id
        folder.mkdir()
        client.download_artifacts(run.info.run_id, "predictions.csv", str(folder))
        rows = generated(folder)
        assert rows and list(rows[0]) == ["id", "reference", "prediction"]
    lora = next(run for run in runs if run.data.tags["sweeper.method"] == "lora")
    outcome = last_json(sweeper("reproduce", lora.info.run_id, "--json", "--tracking-uri", mlflow_server.uri,
                                cwd=tmp_path))
    assert outcome["predictions"] > 0 and outcome["predictions_differing"] == 0
    assert outcome["reproduced"] == outcome["original"]

    logged = {row["id"]: row["prediction"] for row in generated(tmp_path / lora.info.run_id)}
    wanted = list(logged)[:2]
    lines = [line for line in data_lines("bundled:cmg") if json.loads(line)["id"] in wanted]
    (tmp_path / "two.jsonl").write_text("\n".join(lines) + "\n")
    guessed = sweeper("predict", lora.info.run_id, str(tmp_path / "two.jsonl"), "--json",
                      "--tracking-uri", mlflow_server.uri, cwd=tmp_path)
    assert guessed.returncode == 0, guessed.stderr[-2000:]
    assert {row["id"]: row["message"] for row in json.loads(guessed.stdout)} == {id_: logged[id_] for id_ in wanted}
