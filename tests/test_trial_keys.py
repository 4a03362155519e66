"""The trial keys of deciding with confidence: `features` (the expert-feature head) and `baselines` (fitted on the
trial's own split), from the spec to `sweeper train`; bad input is one clear error line."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import yaml
from transformers import BartConfig

from harness import SEARCH_SPACES, data_lines, last_json, spec_dict, sweeper
from sweeper.baselines import BASELINES, BaselineResult, baselines_for
from sweeper.cli import main
from sweeper.cli.training import print_beside
from sweeper.data.features import FEATURE_NAMES, FeatureScaler, feature_matrix
from sweeper.data.records import read_records, sample_records
from sweeper.errors import DataError, SpecError
from sweeper.metrics.bootstrap import classification_intervals
from sweeper.spec import load_spec, parse_overrides
from sweeper.sweep.preflight import preflight
from sweeper.predictions import read_predictions
from sweeper.recipe import prepare_data

SMOKE = SEARCH_SPACES / "smoke.yaml"
CMG = {"task": "cmg", "data.path": "bundled:cmg", "metric": "eval_loss", "mode": "min"}


def write(folder: Path, changes: dict, name: str = "keys") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec_dict(name, changes), sort_keys=False))
    return path


def line_of(path: Path, text: str) -> int:
    return next(number for number, line in enumerate(path.read_text().splitlines(), 1) if text in line)


# --- the spec ---

def test_features_are_searchable_and_default_to_none(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, {"search": {"features": {"choice": ["none", "expert"]}}}))
    assert spec.base_trial().features == "none"
    assert [spec.trial({"features": value}).features for value in ("none", "expert")] == ["none", "expert"]
    assert spec.trial({"features": "expert"}).flat()["features"] == "expert"  # logged, so reproduce reads it back


@pytest.mark.parametrize(("changes", "anchor", "field", "words"), [
    ({"search": {"features": {"choice": ["none", "exprt"]}}}, "features:", "features", "'none' or 'expert'"),
    ({**CMG, "defaults.features": "expert"}, "features: expert", "defaults.features", "not cmg"),
    ({**CMG, "search": {"features": {"choice": ["none", "expert"]}}}, "features:", "features", "not cmg"),
    ({"baselines": ["lapredict", "expert_rl"]}, "- expert_rl", "baselines.1", "did you mean 'expert_lr'?"),
    ({"baselines": ["svm"]}, "- svm", "baselines.0", "use one of lapredict, expert_lr"),
    ({**CMG, "baselines": ["lapredict"]}, "- lapredict", "baselines", "a cmg spec has none"),
])
def test_bad_keys_name_file_line_field_and_fix(tmp_path: Path, changes: dict, anchor: str, field: str,
                                               words: str) -> None:
    path = write(tmp_path, changes)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(caught.value).startswith(f"{path}:{line_of(path, anchor)}: field '{field}': ")
    assert words in str(caught.value)


def test_expert_features_for_cmg_by_override_is_an_error() -> None:
    spec = load_spec(SEARCH_SPACES / "cmg-smoke.yaml")
    with pytest.raises(SpecError, match=r"^--set: field 'features': features: expert is for defect prediction"):
        spec.trial(parse_overrides(["features=expert"]), "--set")


def test_baselines_default_per_task_and_switch_off(tmp_path: Path) -> None:
    assert load_spec(write(tmp_path, {})).baseline_names() == list(BASELINES) == ["lapredict", "expert_lr"]
    assert load_spec(write(tmp_path, {"baselines": []})).baseline_names() == []
    assert load_spec(write(tmp_path, {"baselines": ["lapredict"]})).baseline_names() == ["lapredict"]
    assert load_spec(write(tmp_path, CMG)).baseline_names() == []


def test_a_backbone_the_head_does_not_fit_is_an_error_before_any_trial(tmp_path: Path) -> None:
    backbone = tmp_path / "bart"
    BartConfig(vocab_size=100, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
               decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64).save_pretrained(backbone)
    searched = write(tmp_path, {"backbone": str(backbone), "search": {"method": {"choice": ["lora"]},
                                                                     "features": {"choice": ["none", "expert"]}}})
    with pytest.raises(SpecError, match=r"field 'search.features': features: expert does not fit backbone .*not "
                                        r"'bart'"):
        preflight(load_spec(searched), str(searched))
    plain = write(tmp_path, {"backbone": str(backbone), "search": {"method": {"choice": ["lora"]}}}, "plain")
    preflight(load_spec(plain), str(plain))  # without expert features the backbone is fine


# --- data without features ---

def jsonl(tmp_path: Path, without_features: int) -> Path:
    """12 bundled commits, oldest first, one line without features; the newest 3 are the validation split."""
    lines = [json.loads(line) for line in data_lines("bundled:jitdp")[:12]]
    lines.sort(key=lambda row: (datetime.fromisoformat(row["date"]), row["id"]))  # as the time split orders them
    del lines[without_features - 1]["features"]
    path = tmp_path / "commits.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in lines))
    return path


@pytest.mark.parametrize(("line", "split"), [(4, "training"), (11, "validation")])
def test_records_without_features_name_file_and_line(tmp_path: Path, line: int, split: str) -> None:
    path = jsonl(tmp_path, line)
    config = load_spec(SMOKE).trial({"features": "expert", "data.path": str(path), "data.sample": None})
    with pytest.raises(DataError) as caught:
        prepare_data(config)
    assert (caught.value.source, caught.value.line, caught.value.field) == (str(path), line, "features.la")


def test_train_without_features_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = jsonl(tmp_path, 2)
    code = main(["train", str(SMOKE), "--set", "features=expert", "--set", f"data.path={path}", "--set",
                 "data.sample=null"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith(f"error: {path}:2: field 'features.la': missing; the record has no "
                                            "features")
    assert not any("Traceback" in line for line in err)


# --- the scaler of a trial ---

def test_the_trials_scaler_is_fitted_on_its_training_split_alone() -> None:
    config = load_spec(SMOKE).trial({"features": "expert", "data.sample": 300, "data.max_length": 32})
    data = prepare_data(config)
    valid_ids = {item.id for item in data.valid}
    sampled = sample_records(read_records("bundled:jitdp").records, config.data.sample, config.seed)
    train = feature_matrix([r for r in sampled if r.id not in valid_ids])
    scaler = data.task.scaler
    assert scaler is not None and scaler.rows == len(train) == len(data.train)
    np.testing.assert_allclose(scaler.mean, FeatureScaler().fit(train).mean, rtol=1e-12)
    np.testing.assert_allclose(scaler.scale, FeatureScaler().fit(train).scale, rtol=1e-12)
    assert not np.allclose(scaler.mean, FeatureScaler().fit(feature_matrix(sampled)).mean)  # could have leaked
    assert data.valid[0].features == tuple(scaler.transform(feature_matrix([
        next(r for r in sampled if r.id == data.valid[0].id)]))[0].tolist())
    assert len(data.valid[0].features) == len(FEATURE_NAMES)


# --- sweeper train ---

def test_the_table_beside_the_baselines(capsys: pytest.CaptureFixture) -> None:
    valid = {"auc": 0.7, "auc_ci_low": 0.61, "auc_ci_high": 0.8, "f1": 0.2, "mcc": 0.1}
    baselines = [BaselineResult("lapredict", "", {"valid": valid}, fit_seconds=0.004),
                 BaselineResult("expert_lr", "", skipped="needs the 14 expert features")]
    print_beside("lora (trial)", {"auc": 0.65, "auc_ci_low": 0.55, "auc_ci_high": 0.74, "f1": 0.3, "mcc": 0.2}, 12.0,
                 baselines, ("auc", "f1", "mcc"))
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].split() == ["lora", "(trial)", "0.650", "[0.550,", "0.740]", "0.300", "0.200", "12.0"]
    assert lines[3].split() == ["lapredict", "0.700", "[0.610,", "0.800]", "0.200", "0.100", "0.004"]
    assert lines[4].split()[:2] == ["expert_lr", "skipped:"]


@pytest.mark.slow  # a trial in a subprocess: ~20 s
def test_train_json_prints_intervals_and_the_baselines_of_its_own_split(tmp_path: Path) -> None:
    overrides = ["method=lora", "data.sample=200", "epochs=1", "data.max_length=32"]
    out = sweeper("train", str(SMOKE), *(f"--set={item}" for item in overrides), "--json", "--out",
                  str(tmp_path / "trial"), cwd=tmp_path)
    figures = last_json(out)
    scored = read_predictions(tmp_path / "trial" / "predictions.csv").scored
    reference = classification_intervals([label for _, label, _ in scored], [score for _, _, score in scored])
    assert (figures["auc_ci_low"], figures["auc_ci_high"]) == reference["auc"]
    assert figures["auc_ci_low"] <= figures["auc"] <= figures["auc_ci_high"]
    assert figures["train_flops"] > 0
    config = load_spec(SMOKE).trial(parse_overrides(overrides))
    expected = {result.name: result for result in baselines_for(config)}
    assert set(figures["baselines"]) == {"lapredict", "expert_lr"}
    for name, result in expected.items():
        printed = figures["baselines"][name]
        assert result.valid_ids == [id_ for id_, _, _ in scored]  # the trial's validation commits, in its order
        same = pytest.approx(result.metrics["valid"], rel=0, abs=0, nan_ok=True)  # to the last digit
        assert {key: printed[key] for key in result.metrics["valid"]} == same
        assert printed["auc_ci_low"] <= printed["auc"] <= printed["auc_ci_high"] and printed["fit_seconds"] > 0
