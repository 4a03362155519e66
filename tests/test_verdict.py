"""The verdict's rules on hand-made sweeps (a clear winner, nothing resolvable, a baseline that wins, a cheaper
configuration within noise of the best, seeds that do not back a gap), the factor effects against scipy's bootstrap of
an AUC by hand, the resolution figure against a simulation; and (slow) one verdict from `sweeper run --json`,
`sweeper best --json`, the parent run's note and artifact, and the report, on the session's tiny sweep."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from scipy import stats
from sklearn.metrics import roc_auc_score

from harness import sweeper
from services import MlflowServer

from sweeper.metrics.resolution import resolvable_auc, split_resolution
from sweeper.metrics.text import sentence_bleu
from sweeper.report.effects import factor_effects, level_of
from sweeper.report.sections import heldout_section
from sweeper.report.verdict import RESOLVE_MORE, verdict
from sweeper.spec import parse_spec
from sweeper.predictions import Predictions
from sweeper.recorded.sweeps import SweepDetails, SweepRecord, TrialRun
from tiny_sweep import tiny_sweep

SEARCH = {"method": {"choice": ["full", "lora", "adapter"]}, "features": {"choice": ["none", "expert"]}}


def labels_of(seed: int, n: int = 300, share: float = 0.1) -> tuple[list[int], np.random.Generator]:
    rng = np.random.default_rng(seed)
    return [int(v) for v in rng.random(n) < share], rng


def noisy(labels: list[int], rng: np.random.Generator, signal: float) -> list[float]:
    """Scores in (0, 1) that separate the classes by `signal` standard deviations."""
    return [float(1 / (1 + np.exp(-(signal * y + rng.normal())))) for y in labels]


def run(name: str, number: int, labels: list[int], scores: list[float], role: str = "trial", flops: float = 1e12,
        params: float = 1e6, **searched: str) -> tuple[TrialRun, Predictions]:
    """A completed run whose logged best_auc is scikit-learn's AUC of its predictions."""
    method = searched.get("method", name)
    metrics = {"best_auc": roc_auc_score(labels, scores), "train_flops": flops, "trainable_params": params,
               "train_seconds": flops / 1e10}
    trial = TrialRun(f"run-{name}", name, number, method, "complete", {key: str(v) for key, v in searched.items()},
                     metrics, role=role)
    return trial, Predictions(("id", "label", "score"), {f"c{i}": (str(y), repr(s))
                                                        for i, (y, s) in enumerate(zip(labels, scores))})


def sweep(runs: list[tuple[TrialRun, Predictions | None]], search: dict = SEARCH,
          repeats: list[TrialRun] = ()) -> SweepDetails:
    spec = parse_spec({"name": "x", "search": search}, "x")
    return SweepDetails(SweepRecord("s", "p", "0", "auc", "max"), "x", {}, {}, spec,
                        [r for r, _ in runs if r.role == "trial"], [r for r, _ in runs if r.role == "baseline"],
                        list(repeats), {r.run_id: p for r, p in runs if p is not None})


def test_a_clear_winner_beats_the_baseline_and_its_factor_matters() -> None:
    labels, rng = labels_of(0)
    runs = [run("trial-0", 0, labels, noisy(labels, rng, 3.0), method="lora", features="expert"),
            run("trial-1", 1, labels, noisy(labels, rng, 0.2), method="full", features="none"),
            run("lapredict", -1, labels, noisy(labels, rng, 0.5), "baseline")]
    found = verdict(sweep(runs))
    against = next(c for c in found.baselines if c.a.name == "trial-0")
    assert against.difference.low > 0 and against.side == 1
    assert found.sentences[0].startswith(f"A fine-tuned configuration beats the best baseline: trial-0 (lora, "
                                         f"features expert) beats lapredict (AUC "
                                         f"{runs[2][0].metrics['best_auc']:.3f}) by AUC "
                                         f"{against.difference.value:+.3f} [{against.difference.low:+.3f}, ")
    assert found.sentences[1].startswith("`method` matters (lora over full: AUC +")
    assert "`features` matters (expert over none: AUC +" in found.sentences[1]
    assert "no clear effect" not in found.text
    assert found.sentences[2] == ("Use trial-0 (lora, features expert), the best trial, at 1e+12 training FLOPs (100 s "
                                  "of training): none is cheaper.")
    assert len(found.sentences) == 3


def test_nothing_resolvable_says_so_with_the_resolution_and_what_would_resolve_it() -> None:
    labels, rng = labels_of(3)
    runs = [run("trial-0", 0, labels, noisy(labels, rng, 1.0), method="lora", features="expert", flops=2e12),
            run("trial-1", 1, labels, noisy(labels, rng, 1.0), method="full", features="none", flops=1e12),
            run("lapredict", -1, labels, noisy(labels, rng, 1.0), "baseline")]
    found = verdict(sweep(runs))
    assert all(c.difference.low <= 0 <= c.difference.high for c in found.comparisons())  # the case holds
    positives = sum(labels)
    figure = resolvable_auc(positives, len(labels) - positives)
    assert found.sentences[0].startswith("Nothing in this sweep is resolvable: the best configuration, ")
    assert "no searched factor (`method` and `features`) has a clear effect" in found.sentences[0]
    assert (f"{len(labels)} validation commits, {positives} defective: differences below about {figure:.2f} AUC "
            "cannot be resolved") in found.text
    assert RESOLVE_MORE in found.text and "`data.split: {kind: time, valid: 0.5, folds: 4}`" in found.text
    best = max(runs[:2], key=lambda r: r[0].metrics["best_auc"])[0]
    cheaper = runs[1][0]  # within noise and cheaper: chosen, whichever is best
    assert found.chosen.a is cheaper
    assert found.sentences[-1].startswith("If a fine-tuned model is wanted all the same, use trial-1 (full, "
                                          "features none)")
    assert ("the best trial" in found.sentences[-1]) == (best is cheaper)


def test_a_baseline_that_wins_is_named_first() -> None:
    labels, rng = labels_of(1)
    runs = [run("trial-0", 0, labels, noisy(labels, rng, 0.3), method="lora", features="none"),
            run("trial-1", 1, labels, noisy(labels, rng, 0.2), method="full", features="none"),
            run("lapredict", -1, labels, noisy(labels, rng, 3.0), "baseline"),
            run("expert_lr", -1, labels, noisy(labels, rng, 1.0), "baseline")]
    found = verdict(sweep(runs))
    assert all(c.side == -1 for c in found.baselines) and len(found.baselines) == 2
    best = max(runs[:2], key=lambda r: r[0].metrics["best_auc"])[0]
    assert found.sentences[0].startswith(f"The best baseline, lapredict (AUC {runs[2][0].metrics['best_auc']:.3f}), "
                                         f"beats every fine-tuned configuration: the best, {best.name} (")
    assert re.search(r"differs by AUC -\d\.\d{3} \[-\d\.\d{3}, -\d\.\d{3}\]\.", found.sentences[0])
    assert "expert_lr" not in found.text
    assert found.sentences[-1].startswith("If a fine-tuned model is wanted all the same, use ")


def test_the_cheapest_configuration_within_noise_of_the_best_is_the_one_to_use() -> None:
    labels, rng = labels_of(2)
    best_scores = noisy(labels, rng, 2.5)
    close = [s + 0.02 * rng.normal() for s in best_scores]  # nearly the same ranking: within noise
    runs = [run("trial-0", 0, labels, best_scores, flops=4e13, params=1e8, method="full", features="expert"),
            run("trial-1", 1, labels, close, flops=5e12, params=3e5, method="lora", features="expert"),
            run("trial-2", 2, labels, noisy(labels, rng, 0.1), flops=1e12, params=2e5, method="adapter",
                features="none"),
            run("trial-3", 3, labels, close, flops=5e12, params=9e5, method="lora", features="expert")]
    runs[0][0].metrics["best_auc"] = 1.0  # the best by the sweep's ranking, whatever the noise gave
    found = verdict(sweep(runs))
    chosen = found.chosen
    assert chosen.a.name == "trial-1" and chosen.b.name == "trial-0" and chosen.side == 0  # fewer params: trial-1
    assert chosen.difference.low <= 0 <= chosen.difference.high
    assert found.cost == "train_flops"
    difference = chosen.difference
    assert found.sentences[-1] == ("Use trial-1 (lora, features expert): the cheapest configuration within noise of "
                                   f"the best, trial-0 (AUC {difference.value:+.3f} [{difference.low:+.3f}, "
                                   f"{difference.high:+.3f}] from it), at 5e+12 against 4e+13 training FLOPs "
                                   "(500 s against 4000 s of training).")


def test_held_out_figures_are_the_chosen_configurations_and_the_baselines_and_never_move_the_choice() -> None:
    labels, rng = labels_of(2)
    scores = noisy(labels, rng, 2.5)
    runs = [run("trial-0", 0, labels, scores, flops=4e13, method="full", features="expert"),
            run("trial-1", 1, labels, [s + 0.02 * rng.normal() for s in scores], flops=5e12, method="lora",
                features="expert"),
            run("lapredict", -1, labels, noisy(labels, rng, 1.0), "baseline")]
    texts = []
    for test_auc in (0.6, 0.9):  # the best trial's held-out figure, low then high
        for trial, _ in runs:
            trial.metrics.update({"best_test_auc": test_auc, "test_auc_ci_low": test_auc - 0.1,
                                  "test_auc_ci_high": test_auc + 0.05})
        runs[0][0].metrics["best_test_auc"] = 1.0 - test_auc
        details = sweep(runs)
        found = verdict(details)
        texts.append(found.text)
        rows = heldout_section(details, found).blocks[1].rows
        assert [row[:3] for row in rows] == [
            ["trial-1", "chosen configuration", f"{test_auc:.3f} [{test_auc - 0.1:.3f}, {test_auc + 0.05:.3f}]"],
            ["lapredict (baseline)", "baseline", f"{test_auc:.3f} [{test_auc - 0.1:.3f}, {test_auc + 0.05:.3f}]"]]
    assert texts[0] == texts[1]


def test_seeds_whose_spread_covers_the_gap_leave_it_unresolved_and_their_spread_is_shown() -> None:
    labels, rng = labels_of(4)
    runs = [run("trial-0", 0, labels, noisy(labels, rng, 3.0), method="lora", features="expert", flops=1e12),
            run("trial-1", 1, labels, noisy(labels, rng, 0.3), method="full", features="expert", flops=2e12)]
    seeds = {"run-trial-0": [0.80, 0.60, 0.90], "run-trial-1": [0.70, 0.85, 0.62]}
    repeats = [TrialRun(f"rep-{of}-{seed}", f"rep-{seed}", 0, "x", "complete", {"seed": str(seed)},
                        {"best_auc": value}, role="repeat", repeat_of=of)
               for of, values in seeds.items() for seed, value in enumerate(values, start=1)]
    found = verdict(sweep(runs, {"method": {"choice": ["full", "lora"]}}, repeats))
    method = found.factors[0].comparisons[0]
    assert method.difference.low > 0 and method.repeats.p_value > 0.05 and method.side == 0
    welch = stats.ttest_ind(seeds["run-trial-0"], seeds["run-trial-1"], equal_var=False)
    assert method.repeats.p_value == pytest.approx(welch.pvalue)
    d = method.difference
    assert (f"`method` is not clear over seeds (lora over full: AUC {d.value:+.3f} [{d.low:+.3f}, {d.high:+.3f}] on "
            f"these commits; over 3 seeds {method.repeats.difference:+.3f}, Welch p = {welch.pvalue:.2g})") in found.text
    values = seeds["run-trial-0"]
    assert (f"over 3 seeds its AUC is {np.mean(values):.3f} ± {np.std(values, ddof=1):.3f} (sd)"
            in found.sentences[-1])


def test_factor_effects_match_a_bootstrap_by_hand() -> None:
    labels, rng = labels_of(5, n=200, share=0.2)
    scores = {name: noisy(labels, rng, signal) for name, signal in (("a", 2.0), ("b", 1.0), ("c", 0.5))}
    runs = [run("trial-0", 0, labels, scores["a"], method="lora", features="expert"),
            run("trial-1", 1, labels, scores["b"], method="lora", features="none"),
            run("trial-2", 2, labels, scores["c"], method="full", features="none")]
    factors = {factor.key: factor for factor in factor_effects(sweep(runs), "auc")}
    y = np.array(labels)
    for key, other in (("features", "b"), ("method", "c")):
        comparison = factors[key].comparisons[0]
        a, b = np.array(scores["a"]), np.array(scores[other])
        by_hand = stats.bootstrap((np.arange(len(y)),), lambda i: auc(y[i], a[i]) - auc(y[i], b[i]),
                                  n_resamples=1000, vectorized=False, method="BCa", rng=np.random.default_rng(0))
        assert comparison.difference.value == pytest.approx(roc_auc_score(y, a) - roc_auc_score(y, b))
        assert comparison.difference.low == pytest.approx(by_hand.confidence_interval.low, abs=1e-9)
        assert comparison.difference.high == pytest.approx(by_hand.confidence_interval.high, abs=1e-9)


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """The share of (defective, clean) pairs the scores order right, ties counting half."""
    positive, negative = scores[labels == 1][:, None], scores[labels == 0][None, :]
    return float((positive > negative).mean() + 0.5 * (positive == negative).mean())


def test_message_generation_effects_resample_per_commit_sentence_bleu() -> None:
    references = ["fix typo in readme", "add test for parser", "bump version", "remove dead code", "update docs"] * 8
    written = {"good": list(references), "bad": [reference.split()[0] for reference in references]}
    runs = [(TrialRun(f"run-{name}", name, number, method, "complete", {"method": method},
                      {"best_eval_loss": loss, "train_flops": 1e12}),
             Predictions(("id", "reference", "prediction"), {f"c{i}": (r, p) for i, (r, p)
                                                            in enumerate(zip(references, written[quality]))}))
            for number, (name, method, quality, loss) in enumerate([("trial-0", "lora", "good", 1.0),
                                                                    ("trial-1", "full", "bad", 2.0)])]
    spec = parse_spec({"name": "x", "task": "cmg", "metric": "eval_loss", "mode": "min",
                       "search": {"method": {"choice": ["full", "lora"]}}}, "x")
    details = SweepDetails(SweepRecord("s", "p", "0", "eval_loss", "min"), "x", {}, {}, spec,
                           [trial for trial, _ in runs], [], [], {trial.run_id: found for trial, found in runs})
    found = verdict(details)
    method = found.factors[0].comparisons[0]
    per_commit = [sentence_bleu(r, g) - sentence_bleu(r, b) for r, g, b in zip(references, *written.values())]
    assert method.difference.value == pytest.approx(np.mean(per_commit)) and method.side == 1
    assert found.sentences[0].startswith(f"`method` matters (lora over full: BLEU {np.mean(per_commit):+.3f} [")
    assert found.resolution.metric == "bleu" and found.resolution.commits == len(references)


def test_numeric_keys_are_binned_per_decade_on_a_log_scale_and_in_tertiles_otherwise() -> None:
    labels, rng = labels_of(6)
    lrs = [2e-5, 5e-5, 3e-4, 8e-4, 2e-3, 5e-3]
    dropouts = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    runs = [run(f"trial-{i}", i, labels, noisy(labels, rng, 1.0), method="lora", lr=str(lr),
                **{"lora.dropout": str(d)}) for i, (lr, d) in enumerate(zip(lrs, dropouts))]
    details = sweep(runs, {"lr": {"loguniform": [1e-5, 1e-2]}, "lora.dropout": {"float": [0.0, 0.5]}})
    decade = level_of(details, "lr")
    assert [decade(r) for r, _ in runs] == ["1e-5 to 1e-4"] * 2 + ["1e-4 to 0.001"] * 2 + ["0.001 to 0.01"] * 2
    tertile = level_of(details, "lora.dropout")
    assert [tertile(r) for r, _ in runs] == ["0 to 0.1"] * 2 + ["0.2 to 0.3"] * 2 + ["0.4 to 0.5"] * 2


def test_the_resolution_figure_matches_a_simulation_of_paired_auc_differences() -> None:
    """Binormal scores at AUC 0.75, two models correlated 0.5 within each class, no true difference: 1.96 times the
    spread of their AUC difference is what a paired 95 % interval cannot resolve."""
    rng = np.random.default_rng(0)
    positives, negatives, auc = 22, 378, 0.75
    separation = math.sqrt(2) * stats.norm.ppf(auc)
    cov = [[1.0, 0.5], [0.5, 1.0]]
    differences = []
    for _ in range(1500):
        p = rng.multivariate_normal([separation] * 2, cov, positives)
        n = rng.multivariate_normal([0.0, 0.0], cov, negatives)
        a1, a2 = ((p[:, j][:, None] > n[:, j][None, :]).mean() for j in (0, 1))
        differences.append(a1 - a2)
    simulated = 1.96 * float(np.std(differences))
    assert resolvable_auc(positives, negatives) == pytest.approx(simulated, rel=0.15)
    assert split_resolution("jitdp", [1] * positives + [0] * negatives).value == resolvable_auc(positives, negatives)



def test_runs_without_predictions_are_not_called_unresolvable() -> None:
    labels, rng = labels_of(7)
    runs = [run("trial-0", 0, labels, noisy(labels, rng, 2.0), method="lora", features="expert"),
            run("trial-1", 1, labels, noisy(labels, rng, 0.2), method="full", features="none")]
    found = verdict(sweep([(trial, None) for trial, _ in runs]))
    assert found.sentences == ["No comparison can be made: the runs logged no validation predictions "
                               "(`predictions.csv`; a sweep from an older release?).",
                               "Use trial-0 (lora, features expert), the best trial: no predictions to test cheaper "
                               "configurations against it."]


@pytest.mark.slow
def test_run_best_the_note_the_artifact_and_the_report_give_one_verdict(
        mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> None:
    sweep = tiny_sweep(mlflow_server.uri, tmp_path_factory.mktemp("tiny-sweep"))
    text = sweep.summary["verdict"]  # `sweeper run --json`
    assert text and text.split(". ")[-1].startswith(("Use trial-", "If a fine-tuned model is wanted all the same"))
    best = json.loads(sweeper("best", sweep.sweep_id, "--json", "--tracking-uri", sweep.uri, cwd=sweep.workdir).stdout)
    assert best["verdict"] == text
    client = MlflowClient(sweep.uri)
    parent = client.get_run(sweep.parent_run_id)
    assert parent.data.tags["mlflow.note.content"].startswith(f"**Verdict**: {text}\n")
    folder = tmp_path_factory.mktemp("verdict")
    stored = json.loads(Path(client.download_artifacts(sweep.parent_run_id, "verdict.json", str(folder))).read_text())
    assert stored["verdict"] == text and stored["cost"] == "train_flops"
    commits, positives = (int(parent.data.metrics[name]) for name in ("validation_commits", "validation_positives"))
    assert stored["resolution"]["commits"] == commits and stored["resolution"]["positives"] == positives
    assert parent.data.metrics["resolvable_difference"] == pytest.approx(resolvable_auc(positives, commits - positives))
    assert {c["factor"] for c in stored["comparisons"]} >= {"baseline", "method"}
    out = tmp_path_factory.mktemp("report")
    done = sweeper("report", sweep.sweep_id, "--out", str(out), "--tracking-uri", sweep.uri, cwd=sweep.workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    markdown = (out / "report.md").read_text()
    assert markdown.split("\n## ", 1)[1].startswith(f"Verdict\n\n**{text}**")
    assert (out / "forest.png").stat().st_size > 10_000
    assert client.get_run(sweep.parent_run_id).data.tags["mlflow.note.content"].startswith(f"**Verdict**: {text}\n")


def test_a_sweep_with_nothing_to_compare_only_says_what_to_use() -> None:
    labels, rng = labels_of(8)
    runs = [run("trial-0", 0, labels, noisy(labels, rng, 1.0), method="lora", features="none")]
    assert verdict(sweep(runs)).sentences == ["Use trial-0 (lora, features none), the best trial, at 1e+12 training "
                                              "FLOPs (100 s of training): none is cheaper."]
