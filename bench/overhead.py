"""Orchestration overhead: the same N LoRA trials run bare (`run_trial`, one after another, in this process)
and as a sweep (`sweeper run` with Ray Tune, Optuna and a real MLflow server), one trial at a time.

The sweep's MLflow runs say when each trial started and ended, which splits its extra time into a fixed
start-up and tear-down (Python, Ray, backbone and data checks, the parent run) and an overhead per trial
(Ray's scheduling, checkpoints after each evaluation, MLflow logging and the artifact upload).

The trials' training speed changes with whatever else runs on the machine, by several % from one run to the next:
more than the overhead measured. So the overhead per trial is also given with each mode's own training and
evaluation time (the trials' `train_seconds` + `eval_seconds`) taken out: what the sweep adds around the same
compute. `bench/overhead_profile.py` splits that overhead into its pieces.

Both modes start from an empty `$SWEEPER_CACHE` (the embedded backbone linked in): the first trial encodes the
commits, the later ones read the node's encoding cache (`sweeper.cache.encoded`). The trials' timing events
(`SWEEPER_TIMINGS`) give the encoding time of each trial, first and later.

    python bench/overhead.py            # 4 trials of about 30 s each: about 5 minutes on 2 cores
    python bench/overhead.py --quick    # 2 tiny trials: checks the script runs
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common

TARGET_SHARE = 2.0  # % of the trial time, for trials of about 30 s
TARGET_PER_TRIAL = 0.5  # seconds of overhead per trial


def spec(trials: int, sample: int, epochs: int, max_length: int, storage: Path) -> dict[str, Any]:
    """LoRA on the bundled data, a grid of exactly `trials` learning rates: every trial costs the same."""
    return common.lora_grid_spec("bench-overhead", trials, sample, epochs, max_length, storage, max_concurrent=1)


def run_bare(spec_path: Path) -> tuple[float, list[float], list[float]]:
    """Every trial of the grid through `run_trial`, one after another: total wall, wall per trial, trial time
    (train + eval seconds as the trial measures them)."""
    from sweeper.spec import load_spec
    from sweeper.trial import run_trial

    loaded = load_spec(spec_path)
    walls, trained = [], []
    started = time.perf_counter()
    for rate in loaded.search["lr"].choice or []:
        clock = time.perf_counter()
        result = run_trial(loaded.trial({"lr": rate}))
        walls.append(time.perf_counter() - clock)
        trained.append(result.costs["train_seconds"] + result.costs["eval_seconds"])
        print(f"  bare trial lr={rate}: {walls[-1]:.1f} s, auc {result.metrics['auc']:.3f}", file=sys.stderr,
              flush=True)
    return time.perf_counter() - started, walls, trained


def encoding_seconds(events: Path) -> list[float]:
    """Seconds each trial spent encoding (or reading the encoded splits), in the order the trials ran."""
    if not events.is_file():
        return []
    rows = [json.loads(line) for line in events.read_text().splitlines() if line.strip()]
    return [row["seconds"] for row in sorted(rows, key=lambda row: row["start"]) if row["phase"] == "trial.encode"]


def fresh_cache(folder: Path) -> Path:
    """An empty `$SWEEPER_CACHE` holding only a link to the embedded backbone (built once in the real cache)."""
    from sweeper.backbone import embedded_backbone_dir

    folder.mkdir(parents=True)
    (folder / embedded_backbone_dir().name).symlink_to(embedded_backbone_dir())
    return folder


def main() -> None:
    trials, sample, epochs, max_length = common.lora_grid_sizes(__doc__.splitlines()[0])

    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as temp:
        folder = Path(temp)
        spec_path = common.write_spec(folder, spec(trials, sample, epochs, max_length, folder / "ray-results"))
        from sweeper.backbone import embedded_backbone_dir

        embedded_backbone_dir()  # built once and cached: neither mode pays for building it
        print(f"(a) bare: {trials} trials through run_trial", file=sys.stderr, flush=True)
        os.environ.update(SWEEPER_CACHE=str(fresh_cache(folder / "cache-a")), SWEEPER_TIMINGS=str(folder / "a.jsonl"))
        bare_wall, bare_walls, bare_trained = run_bare(spec_path)
        bare_encoding = encoding_seconds(folder / "a.jsonl")

        print(f"(b) sweeper run: {trials} trials, MLflow server", file=sys.stderr, flush=True)
        os.environ.update(SWEEPER_CACHE=str(fresh_cache(folder / "cache-b")), SWEEPER_TIMINGS=str(folder / "b.jsonl"))
        with common.mlflow_server(folder / "mlflow") as uri:
            sweep = common.run_sweep(spec_path, uri, folder, "bench-overhead")
            runs = common.trial_runs(uri, sweep.summary["parent_run_id"])
        sweep_encoding = encoding_seconds(folder / "b.jsonl")
        for variable in ("SWEEPER_CACHE", "SWEEPER_TIMINGS"):
            del os.environ[variable]
        complete = sum(1 for run in runs if run.info.status == "FINISHED")
        if complete != trials:
            raise SystemExit(f"expected {trials} finished trial runs, MLflow has {complete}")

    first_start = min(run.info.start_time for run in runs) / 1000
    last_end = max(run.info.end_time for run in runs) / 1000
    start_up = first_start - sweep.started
    tear_down = sweep.ended - last_end
    per_trial_sweep = (last_end - first_start) / trials
    per_trial_bare = bare_wall / trials
    per_trial_overhead = per_trial_sweep - per_trial_bare
    trial_time = sum(bare_trained) / trials
    sweep_trained = [run.data.metrics["train_seconds"] + run.data.metrics["eval_seconds"] for run in runs]
    sweep_trial_time = sum(sweep_trained) / trials
    per_trial_net = (per_trial_sweep - sweep_trial_time) - (per_trial_bare - trial_time)
    net_share = 100 * per_trial_net / per_trial_bare
    total_overhead = sweep.wall_seconds - bare_wall
    share = 100 * per_trial_overhead / per_trial_bare
    total_share = 100 * total_overhead / bare_wall

    common.print_report("Orchestration overhead (bench/overhead.py)", {
        "trials": f"{trials} LoRA trials (grid over lr), one at a time, pruner none",
        "data": f"bundled:jitdp, sample {sample}, max_length {max_length}, epochs {epochs}, 1 thread",
        "tracking (b)": "mlflow server, SQLite backend, local artifacts",
    }, [
        ("Wall time", ("mode", "wall s", "s per trial", "trial time s (train + eval)"), [
            ("(a) bare run_trial, in-process", bare_wall, per_trial_bare, trial_time),
            ("(b) sweeper run + Ray Tune + MLflow server", sweep.wall_seconds, per_trial_sweep, sweep_trial_time),
        ]),
        ("Overhead of (b) over (a)", ("figure", "value", "target", "met"), [
            ("fixed start-up s (process start to first trial run)", start_up, "-", "-"),
            ("fixed tear-down s (last trial run end to exit)", tear_down, "-", "-"),
            ("overhead per trial s", per_trial_overhead, f"< {TARGET_PER_TRIAL:g} s",
             common.verdict(per_trial_overhead, TARGET_PER_TRIAL, at_least=False)),
            ("overhead per trial, % of a bare trial", share, f"< {TARGET_SHARE:g} %",
             common.verdict(share, TARGET_SHARE, at_least=False)),
            ("overhead per trial s, each mode's training + evaluation time taken out", per_trial_net,
             f"< {TARGET_PER_TRIAL:g} s", common.verdict(per_trial_net, TARGET_PER_TRIAL, at_least=False)),
            ("  the same, % of a bare trial", net_share, f"< {TARGET_SHARE:g} %",
             common.verdict(net_share, TARGET_SHARE, at_least=False)),
            (f"total overhead s ({trials} trials, start-up included)", total_overhead, "-", "-"),
            ("total overhead, % of bare wall", total_share, "-", "-"),
        ]),
        ("Encoding (seconds per trial: the first encodes, the later ones read the node's cache)",
         ("mode", "first trial s", "later trials s (mean)", "later trials s (max)"),
         [(mode, *(values[:1] or ["-"]), *((sum(values[1:]) / len(values[1:]), max(values[1:])) if values[1:]
                                          else ("-", "-")))
          for mode, values in (("(a) bare", bare_encoding), ("(b) sweep", sweep_encoding))]),
    ])
    print(f"bare trial walls s: {', '.join(f'{wall:.1f}' for wall in bare_walls)}; sweep trial runs s: "
          + ", ".join(f"{(run.info.end_time - run.info.start_time) / 1000:.1f}" for run in runs))
    print(f"trial time s (train + eval), bare: {', '.join(f'{value:.1f}' for value in bare_trained)}; sweep: "
          + ", ".join(f"{value:.1f}" for value in sweep_trained))


if __name__ == "__main__":
    main()
