"""Defect risk at commit time: `sweeper predict RUN --repo CLONE REV ...` with a model trained on expert features,
the examples (a CI script and a pre-push hook) against a repository built here, the registered model served by
`mlflow models serve` (a request with and without `features`), the sweep's baselines' dataset inputs, and a pruned
expert trial's checkpoint holding its scaler.

One sweep of one LoRA trial with `features: expert` on the bundled sample serves them all; its best trial is
registered as `models:/commit-risk/1`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient

from bank_repo import Repo, build
from harness import REPO, data_lines, fresh_cache, last_json, small_trial, sweeper, trial_runs, write_spec
from services import MlflowServer, free_port, stop, wait_for_http
from sweeper.artifacts import SCALER_FILE, read_scaler
from sweeper.mining.miner import MiningOptions, mine
from sweeper.tracking.schema import Role

pytestmark = pytest.mark.slow
MODEL = "commit-risk"


@dataclass(frozen=True)
class Expert:
    uri: str
    run_id: str
    threshold: float
    summary: dict


@pytest.fixture(scope="module")
def expert(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> Expert:
    folder = tmp_path_factory.mktemp("commit-risk")
    spec = write_spec(folder, MODEL, {"defaults.features": "expert", "search": {"method": {"choice": ["lora"]}},
                                      "sweep.trials": 1, "sweep.register_best": True})
    summary = last_json(sweeper("run", str(spec), "--tracking-uri", mlflow_server.uri, "--json", cwd=folder))
    run, = trial_runs(mlflow_server.uri, summary["parent_run_id"])
    assert run.data.tags["sweeper.state"] == "complete", summary
    return Expert(mlflow_server.uri, run.info.run_id, run.data.metrics["best_max_f1_threshold"], summary)


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    return build(tmp_path_factory.mktemp("bank") / "bank")


@pytest.fixture
def env(expert: Expert, tmp_path: Path) -> dict[str, str]:
    """The tracking server, a fresh $SWEEPER_CACHE (its embedded backbones linked) and `sweeper` as this Python runs
    it (for the examples)."""
    return {"MLFLOW_TRACKING_URI": expert.uri, "SWEEPER_CACHE": str(fresh_cache(tmp_path / "cache")),
            "SWEEPER": f"{sys.executable} -m sweeper.cli"}


def scored_from_jsonl(expert: Expert, bank: Repo, folder: Path, env: dict[str, str]) -> dict[str, float]:
    """What `sweeper predict RUN FILE` gives the bank's commits as `from-git` writes them: the reference."""
    out = folder / "bank.jsonl"
    mine(MiningOptions(repo=bank.root, task="jitdp", out=out, settle_days=0, quiet=True))
    done = sweeper("predict", expert.run_id, str(out), "--json", cwd=folder, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return {row["id"].split("@")[1]: row["probability"] for row in json.loads(done.stdout)}


def test_predict_repo_scores_as_the_training_datas_records(expert: Expert, bank: Repo, tmp_path: Path,
                                                           env: dict[str, str]) -> None:
    reference = scored_from_jsonl(expert, bank, tmp_path, env)
    done = sweeper("predict", expert.run_id, "--repo", str(bank.root), "HEAD~4..HEAD", "--json", cwd=tmp_path, env=env,
                   timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout)
    names = {sha: name for name, sha in bank.shas.items()}
    assert [names[row["commit"]] for row in rows] == ["R4", "R5", "R6"]  # R3 (package-info only) and M left out
    assert "changes no source file" in done.stderr and "a merge commit" in done.stderr
    for row in rows:
        assert row["probability"] == pytest.approx(reference[row["commit"]], abs=1e-6)
        assert row["threshold"] == expert.threshold
        assert row["decision"] == ("defect-inducing" if row["probability"] >= expert.threshold else "clean")
        assert set(row["features"]) >= {"la", "exp", "sexp", "fix"}
    assert rows[-1]["subject"] == "Fix deposit bug" and rows[-1]["features"]["fix"] == 1
    print(done.stdout)


def test_text_output_exit_status_and_registered_version(expert: Expert, bank: Repo, tmp_path: Path,
                                                        env: dict[str, str]) -> None:
    reference = scored_from_jsonl(expert, bank, tmp_path, env)
    shown = sweeper("predict", f"models:/{MODEL}/1", "--repo", str(bank.root), cwd=tmp_path, env=env, timeout=600)
    assert shown.returncode == 0, shown.stderr[-3000:]
    sha, probability, decision, subject = shown.stdout.strip().split("\t")
    assert (sha, subject) == (bank.shas["R6"][:12], "Fix deposit bug")
    assert float(probability) == pytest.approx(reference[bank.shas["R6"]], abs=1e-6)
    assert decision == ("defect-inducing" if float(probability) >= expert.threshold else "clean")
    assert f"threshold {expert.threshold:.6f}" in shown.stderr
    highest = max(reference[bank.shas[name]] for name in ("R5", "R6"))
    for limit, status in ((highest - 1e-4, 1), (min(highest + 1e-4, 1.0), 0)):
        done = sweeper("predict", expert.run_id, "--repo", str(bank.root), "main~1..main", bank.shas["R5"],
                       "--fail-above", f"{limit:.6f}", cwd=tmp_path, env=env, timeout=600)
        assert done.returncode == status, done.stderr[-3000:]
    bad = sweeper("predict", expert.run_id, "--repo", str(bank.root), "nope..HEAD", cwd=tmp_path, env=env)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: ")
    assert "unknown range 'nope..HEAD'" in bad.stderr
    assert "usage:" in sweeper("predict", expert.run_id, "--fail-above", "2", cwd=tmp_path, env=env).stderr


def clone_with_remote(bank: Repo, folder: Path) -> tuple[Path, Path]:
    """A bare remote holding the bank's history up to R2, and a clone of the whole bank pointing at it."""
    remote, work = folder / "remote.git", folder / "work"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    subprocess.run(["git", "clone", "-q", str(bank.root), str(work)], check=True)
    git(work, "remote", "add", "shared", str(remote))
    git(work, "push", "-q", "--no-verify", "shared", f"{bank.shas['R2']}:refs/heads/main")
    git(work, "fetch", "-q", "shared")
    return remote, work


def git(folder: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True,
                          env={**os.environ, **(env or {})})


def test_ci_script_scores_the_branchs_new_commits(expert: Expert, bank: Repo, tmp_path: Path,
                                                  env: dict[str, str]) -> None:
    reference = scored_from_jsonl(expert, bank, tmp_path, env)
    new = [bank.shas[name] for name in ("R4", "R5", "R6")]  # R3 and the merge are not scored
    script = REPO / "examples" / "ci-score-commits.sh"
    for limit, status in ((min(reference[sha] for sha in new) - 1e-4, 1), (1.0, 0)):
        report = tmp_path / f"scores-{status}.json"
        done = subprocess.run([str(script), bank.shas["R2"]], cwd=bank.root, capture_output=True, text=True,
                              env={**os.environ, **env, "SWEEPER_MODEL": expert.run_id,
                                   "SWEEPER_FAIL_ABOVE": f"{limit:.6f}", "SWEEPER_JSON": str(report)})
        assert done.returncode == status, done.stdout + done.stderr[-3000:]
        rows = json.loads(report.read_text())
        assert [row["commit"] for row in rows] == new
        assert [row["probability"] for row in rows] == pytest.approx([reference[sha] for sha in new], abs=1e-6)
    failed = subprocess.run([str(script), "no-such-branch"], cwd=bank.root, capture_output=True, text=True,
                            env={**os.environ, **env, "SWEEPER_MODEL": expert.run_id})
    assert failed.returncode == 2 and "unknown range 'no-such-branch..HEAD'" in failed.stderr
    assert failed.stderr.strip().endswith("sweeper: scoring failed (exit status 2)")


def test_pre_push_hook_refuses_a_risky_push(expert: Expert, bank: Repo, tmp_path: Path,
                                            env: dict[str, str]) -> None:
    reference = scored_from_jsonl(expert, bank, tmp_path, env)
    remote, work = clone_with_remote(bank, tmp_path)
    hook = work / ".git" / "hooks" / "pre-push"
    shutil.copy(REPO / "examples" / "pre-push", hook)
    hook.chmod(0o755)
    git(work, "config", "sweeper.model", f"models:/{MODEL}/1")
    pushed = [bank.shas[name] for name in ("R4", "R5", "R6")]
    git(work, "config", "sweeper.failAbove", f"{min(reference[sha] for sha in pushed) - 1e-4:.6f}")
    refused = subprocess.run(["git", "-C", str(work), "push", "shared", "main"], capture_output=True, text=True,
                             env={**os.environ, **env})
    assert refused.returncode != 0 and "push refused" in refused.stderr, refused.stderr[-3000:]
    assert git(remote, "rev-parse", "main").stdout.strip() == bank.shas["R2"]  # nothing went
    for sha in pushed:
        assert sha[:12] in refused.stderr
    git(work, "config", "sweeper.failAbove", "1")
    accepted = subprocess.run(["git", "-C", str(work), "push", "shared", "main"], capture_output=True, text=True,
                              env={**os.environ, **env})
    assert accepted.returncode == 0, accepted.stderr[-3000:]
    assert git(remote, "rev-parse", "main").stdout.strip() == bank.shas["R6"]


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_served_model_names_missing_features(expert: Expert, tmp_path: Path) -> None:
    """`mlflow models serve` of the registered version: a request with `features` is scored as `sweeper predict`
    scores it; one without gets a 400 whose one message names the field and what it must hold."""
    run_id = expert.run_id
    client = MlflowClient(expert.uri)
    client.download_artifacts(run_id, "predictions.csv", str(tmp_path))
    first_valid = (tmp_path / "predictions.csv").read_text().splitlines()[1].split(",")
    row = next(json.loads(line) for line in data_lines("bundled:jitdp") if json.loads(line)["id"] == first_valid[0])
    good = {key: row[key] for key in ("id", "message", "diff", "date", "features")}
    port, log = free_port(), tmp_path / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{MODEL}/1",
                                   "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                  # MLflow starts `uvicorn` by name: this Python's, also outside an activated venv
                                  env={**os.environ, "MLFLOW_TRACKING_URI": expert.uri,
                                       "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ping", server, log, 300)
        status, answer = post(f"http://127.0.0.1:{port}/invocations", {"dataframe_records": [good]})
        print("good request:", status, json.dumps(answer))
        assert status == 200, answer
        assert answer["predictions"][0]["probability"] == pytest.approx(float(first_valid[2]), abs=1e-5)
        bad = {key: value for key, value in good.items() if key != "features"}
        status, answer = post(f"http://127.0.0.1:{port}/invocations", {"dataframe_records": [bad]})
        print("bad request:", status, json.dumps(answer))
    finally:
        stop(server)
    assert status == 400 and answer["error_code"] == "INVALID_PARAMETER_VALUE" and "stack_trace" not in answer
    message = answer["message"]
    assert "field 'features' is missing in 1 of 1 rows, first row 1" in message and "Traceback" not in message
    assert "la, ld, nf, ns, nd, entropy, ndev, lt, nuc, age, exp, rexp, sexp, fix" in message


def test_baselines_log_the_trials_dataset_inputs(expert: Expert) -> None:
    def inputs(run) -> list[tuple[str, str, str]]:
        return sorted((i.dataset.name, i.dataset.digest, i.tags[0].value) for i in run.inputs.dataset_inputs)

    trial, = trial_runs(expert.uri, expert.summary["parent_run_id"])
    baselines = trial_runs(expert.uri, expert.summary["parent_run_id"], Role.BASELINE)
    assert {b.data.tags["sweeper.baseline"] for b in baselines} == {"lapredict", "expert_lr"}
    for baseline in baselines:
        assert inputs(baseline) == inputs(trial) and len(inputs(trial)) == 2


def test_a_pruned_expert_trials_checkpoint_holds_its_scaler(tmp_path: Path) -> None:
    """A pruned trial's run logs its last checkpoint: with `features: expert` that holds the scaler its weights
    need, the one the finished trial writes."""
    from sweeper.trial import run_trial

    class Pruned(Exception):
        pass

    def pruned_at_first_evaluation(evaluation) -> None:
        evaluation.save(tmp_path / "checkpoint")
        raise Pruned

    config = small_trial("lora", features="expert", epochs=2)
    with pytest.raises(Pruned):
        run_trial(config, report=pruned_at_first_evaluation)
    run_trial(config, tmp_path / "finished")
    assert (tmp_path / "checkpoint" / SCALER_FILE).read_text() == (tmp_path / "finished" / SCALER_FILE).read_text()
    assert read_scaler(tmp_path / "checkpoint").rows > 0
