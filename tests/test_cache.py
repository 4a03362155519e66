"""Work shared across trials: encoded splits and frozen-prefix states come back exactly as computed, keyed by all
they depend on, built once under concurrency; cached and uncached models give the same logits."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness import fresh_cache, small_trial
from sweeper.predictions import read_predictions
from sweeper.tracking.schema import PREDICTIONS_FILE
from sweeper.backbone import load_tokenizer
from sweeper.cache import encoded
from sweeper.cache.frozen import frozen_prefix, use_frozen_cache
from sweeper.config import TrialConfig
from sweeper.data.records import read_records, sample_records
from sweeper.data.split import split_records
from sweeper.methods import apply_method
from sweeper.tasks.defects import predict
from sweeper.recipe import Prepared, predict_saved, prepare_data
from sweeper.trial import run_trial

CPU = torch.device("cpu")
TINY = {"data.sample": 120, "data.max_length": 32}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty $SWEEPER_CACHE that still holds the embedded backbones (built once in the real one)."""
    folder = fresh_cache(tmp_path / "cache")
    monkeypatch.setenv("SWEEPER_CACHE", str(folder))
    encoded._recent.clear()
    torch.set_num_threads(1)  # as trials run: on a busy machine more threads only wait for each other
    return folder


def frozen_model(config: TrialConfig, data: Prepared) -> tuple[torch.nn.Module, str]:
    """The trial's model with the frozen-prefix cache in use, as `run_trial` sets it up, in eval mode."""
    torch.manual_seed(0)
    backbone = data.task.load_model(config.backbone)
    plan = frozen_prefix(backbone, config)
    model = apply_method(backbone, config)
    use = use_frozen_cache(model, plan, config, [data.train, data.valid, data.test], data.encoding_key,
                           data.task.pad_id, CPU)
    return model.eval(), use.note


@pytest.mark.parametrize("task", ["jitdp", "cmg"])
def test_cached_encoding_is_what_the_task_encodes(cache: Path, task: str) -> None:
    config = small_trial("lora", task, **TINY)
    first = prepare_data(config)
    encoded._recent.clear()  # the second trial reads the files, as a trial in another worker does
    second = prepare_data(config)
    dataset = read_records(config.data.path, task)
    splits = split_records(sample_records(dataset.records, config.data.sample, config.seed), config.data.split,
                           config.seed)
    tokenizer = load_tokenizer(config.backbone, task)
    fresh = [first.task.encode(part, tokenizer) for part in (splits.train, splits.valid, splits.test)]
    assert [second.train, second.valid, second.test] == fresh
    assert [first.train, first.valid, first.test] == fresh
    assert first.encoding_key == second.encoding_key
    assert [path.name for path in (cache / "encoded").iterdir() if path.is_dir()] == [first.encoding_key]


def test_encoding_key_changes_with_tokenizer_settings_and_records() -> None:
    config = small_trial("lora", **TINY)
    dataset = read_records("bundled:jitdp")
    parts = (dataset.records[:50], dataset.records[50:60], [])
    tokenizer = load_tokenizer("embedded")
    key = encoded.encoding_key(config, dataset.digest, parts, tokenizer)
    assert encoded.encoding_key(config.with_overrides({"lr": 0.5}), dataset.digest, parts, tokenizer) == key
    other_tokenizer = load_tokenizer("embedded")
    other_tokenizer.add_tokens(["[NEW]"])
    changed = [
        encoded.encoding_key(config.with_overrides({"data.max_length": 33}), dataset.digest, parts, tokenizer),
        encoded.encoding_key(config.with_overrides({"data.message_tokens": 8}), dataset.digest, parts, tokenizer),
        encoded.encoding_key(config, dataset.digest, parts, other_tokenizer),
        encoded.encoding_key(config, dataset.digest, (dataset.records[:49], *parts[1:]), tokenizer),
        encoded.encoding_key(config.with_overrides({"task": "cmg"}), dataset.digest, parts, tokenizer),
        encoded.encoding_key(config.with_overrides({"seed": 1}), dataset.digest, parts, tokenizer),
        encoded.encoding_key(config, "another-digest", parts, tokenizer),
        encoded.encoding_key(config.with_overrides({"features": "expert"}), dataset.digest, parts, tokenizer),
    ]
    assert len({key, *changed}) == 9


@pytest.mark.slow
def test_concurrent_trials_build_an_entry_once(cache: Path, tmp_path: Path) -> None:
    log = tmp_path / "builds.log"
    script = ("import os, sys, time; from pathlib import Path; from sweeper.cache import cached_folder\n"
              "def build(folder):\n"
              "    open(sys.argv[1], 'a').write(f'{os.getpid()}\\n'); time.sleep(1.0)\n"
              "    (folder / 'value.txt').write_text(str(os.getpid()))\n"
              "folder, built = cached_folder('demo', 'k1', build)\n"
              "print((folder / 'value.txt').read_text(), built)\n")
    processes = [subprocess.Popen([sys.executable, "-c", script, str(log)], stdout=subprocess.PIPE, text=True)
                 for _ in range(3)]
    outputs = [process.communicate(timeout=300)[0].split() for process in processes]
    assert all(process.returncode == 0 for process in processes)
    builders = log.read_text().split()
    assert len(builders) == 1  # one process built, the others waited and read its entry
    assert sorted(built for _, built in outputs) == ["False", "False", "True"]
    assert {value for value, _ in outputs} == {builders[0]}
    assert not [path for path in (cache / "demo").iterdir() if path.name.endswith(".partial")]


@pytest.mark.parametrize(("method", "settings"), [("lora", {"lora.layers": "3"}),
                                                  ("lora", {"lora.layers": "3", "features": "expert"}),
                                                  ("adapter", {"adapter.layers": "2-3", "adapter.bottleneck": 8}),
                                                  ("ia3", {"ia3.layers": "3"})])
def test_cached_and_uncached_models_give_the_same_logits(cache: Path, method: str, settings: dict) -> None:
    config = small_trial(method, **TINY, **settings)
    data = prepare_data(config)
    model, note = frozen_model(config, data)
    assert note.startswith(f"layer {min(int(part) for part in settings[f'{method}.layers'].split('-'))}: built")
    cached, _ = predict(model, data.valid, 16, data.task.pad_id, CPU)
    uncached, _ = predict(frozen_model(config.with_overrides({"cache_frozen": "off"}), data)[0], data.valid, 16,
                          data.task.pad_id, CPU)
    assert cached == pytest.approx(uncached, abs=1e-6)  # batches padded differently: float rounding only


def test_an_encoder_decoder_caches_its_encoder_when_only_the_decoder_trains(cache: Path) -> None:
    config = small_trial("lora", "cmg", **TINY, **{"lora.layers": "not 0-1"})  # the toy BART: 2 + 2 layers
    data = prepare_data(config)
    model, note = frozen_model(config, data)
    assert note.startswith("layer 2: built")
    cached = data.task.evaluate(model, data.valid, CPU, score=True)
    uncached = data.task.evaluate(frozen_model(config.with_overrides({"cache_frozen": "off"}), data)[0], data.valid,
                                  CPU, score=True)
    assert cached.metrics["eval_loss"] == pytest.approx(uncached.metrics["eval_loss"], rel=1e-6)
    assert cached.predictions == uncached.predictions  # generation reads the cached encoder output too


@pytest.mark.slow
def test_frozen_cache_keys_never_hit_across_max_length_layer_or_precision(cache: Path) -> None:
    base = small_trial("lora", **TINY, **{"lora.layers": "3"})
    notes = {}
    for name, config in [("base", base), ("again", base),
                         ("max_length", base.with_overrides({"data.max_length": 40})),
                         ("layer", base.with_overrides({"lora.layers": "2-3"})),
                         ("bf16", base.with_overrides({"precision": "bf16"})),
                         ("adapter, same layer", base.with_overrides({"method": "adapter", "adapter.layers": "3"}))]:
        notes[name] = frozen_model(config, prepare_data(config))[1]
    key = lambda note: note.split()[3]  # noqa: E731  'layer 3: built KEY (...)'
    assert notes["again"] == notes["base"].replace("built", "reused")
    assert notes["adapter, same layer"] == notes["again"]  # same backbone, data and layer: shared
    for name in ("max_length", "layer", "bf16"):
        assert " built " in notes[name] and key(notes[name]) != key(notes["base"]), name
    assert len(list((cache / "frozen").glob("*/states.npy"))) == 4


def test_what_does_not_qualify_trains_without_the_cache(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = small_trial("lora", **TINY, **{"lora.layers": "3"})
    data = prepare_data(config)
    assert frozen_model(config.with_overrides({"method": "full"}), data)[1] == "off: full trains every layer"
    assert frozen_model(config.with_overrides({"lora.layers": "all"}), data)[1] == "off: lora trains layer 0"
    assert frozen_model(config.with_overrides({"cache_frozen": "off"}), data)[1] == "off (cache_frozen: off)"
    monkeypatch.setenv("SWEEPER_FROZEN_CACHE_GB", "0.001")
    model, note = frozen_model(config, data)
    assert note.startswith("off: the cache would take") and "SWEEPER_FROZEN_CACHE_GB" in note
    assert not (cache / "frozen").exists() or not any((cache / "frozen").iterdir())
    assert len(predict(model, data.valid, 16, data.task.pad_id, CPU)[0]) == len(data.valid)  # still a working model


@pytest.mark.slow
def test_a_cached_trial_repeats_exactly_and_its_saved_model_predicts_the_same(cache: Path, tmp_path: Path) -> None:
    config = small_trial("adapter", **TINY, **{"adapter.layers": "3", "epochs": 2, "features": "expert"})
    first = run_trial(config, tmp_path / "first")
    assert first.tags["sweeper.frozen_cache"].startswith("layer 3: built")
    again = run_trial(config)  # reads the cache, as `sweeper reproduce` on the same node
    shutil.rmtree(cache / "frozen")
    rebuilt = run_trial(config)  # builds it again, as `reproduce` on another node
    assert rebuilt.tags["sweeper.frozen_cache"].startswith("layer 3: built")
    assert first.metrics == again.metrics == rebuilt.metrics
    assert predict_saved(tmp_path / "first") == read_predictions(tmp_path / "first" / PREDICTIONS_FILE).values
    assert json.loads((tmp_path / "first" / "config.json").read_text())["cache_frozen"] == "auto"
