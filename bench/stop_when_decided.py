"""Compute saved by stopping when decided: the same seeded sweep to its full budget and with `sweep.stop: decided`.

Two search spaces on the bundled JIT-DP sample, each run with three searcher seeds:

- `clear`: a factor that clearly matters (a learning rate of 1e-4, at which one epoch learns nothing, against 1e-2:
  about +0.27 AUC) beside a LoRA rank that barely does;
- `flat`: nothing that matters (LoRA ranks and learning rates close together, all of which learn).

Both sweeps of a pair use the same seeded searcher (random, or with `--searcher grid` Optuna's grid in a seeded
order, repeating the grid once it is used up), one trial at a time: they try the very same configurations in the same
order, so the decided sweep's trials are the first trials of the full one and only the stopping differs.
Compute is read back from the MLflow runs (a local SQLite store): estimated training FLOPs (`train_flops`) and
measured `compute_seconds` (training plus evaluation), summed over the trials. The verdicts are compared answer by
answer (`sweeper.sweep.stopping.answers`): beats the baselines or not, the factors that matter, the cheapest
configuration within noise.

    python bench/stop_when_decided.py            # 2 spaces x 3 seeds x 2 sweeps, budget 16: about 30 minutes
    python bench/stop_when_decided.py --quick    # one seed, 8-trial budget: checks the script runs

The stopping settings default to the spec's own defaults (`min_trials: 6`, `patience: 3`); `--quick` lowers them
to 3 and 2 so that its short budget can stop.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import common

TARGET_SAVING = 40.0  # % of the full budget's compute

SPACES: dict[str, dict[str, Any]] = {
    "clear": {"lr": {"choice": [1e-4, 1e-2]}, "lora.rank": {"choice": [4, 8]}},
    "flat": {"lora.rank": {"choice": [2, 4, 8]}, "lr": {"choice": [8e-3, 1e-2, 1.2e-2]}},
}


@dataclass(frozen=True)
class Outcome:
    """One sweep: trials that ran, their training FLOPs and compute seconds, its answers, and why it stopped."""

    trials: int
    flops: float
    seconds: float
    wall_seconds: float
    answers: tuple[Any, ...]
    stopped: dict[str, Any] | None


def spec(space: str, seed: int, when: str, options: Any, storage: Path) -> dict[str, Any]:
    """A small LoRA sweep on the bundled sample: a random split (stratified, so the validation holds enough defective
    commits to resolve a large effect), one short epoch per trial, one trial at a time."""
    return {
        "name": f"bench-stop-{space}",
        "task": "jitdp",
        "data": {"path": "bundled:jitdp", "sample": options.sample, "split": {"kind": "random", "valid": 0.4},
                 "max_length": 32},
        "backbone": "embedded",
        "metric": "auc",
        "defaults": {"method": "lora", "epochs": 1, "batch_size": 16, "lr": 1e-3, "class_weighting": True,
                     "lora": {"rank": 4}},
        "search": SPACES[space],
        "sweep": {"trials": options.trials, "searcher": options.searcher, "seed": seed, "max_concurrent": 1,
                  "pruner": {"kind": "none"}, "resources": {"cpu": 1},
                  "stop": {"when": when, "min_trials": options.min_trials, "patience": options.patience}},
        "tracking": {"storage": str(storage)},
    }


def run(space: str, seed: int, when: str, options: Any, folder: Path, uri: str) -> Outcome:
    from sweeper.report.verdict import verdict
    from sweeper.sweep.stopping import answers
    from sweeper.tracking.client import Tracker
    from sweeper.recorded.sweeps import find_sweep, load_sweep

    name = f"{space}-{seed}-{when}"
    print(f"  {name} ...", file=sys.stderr, flush=True)
    path = common.write_spec(folder, spec(space, seed, when, options, folder / "ray-results"), f"{name}.yaml")
    try:
        sweep = common.run_sweep(path, uri, folder, name)
    except RuntimeError as error:  # on a loaded machine Ray's node can time out starting: once more, as a new sweep
        if "timed out during startup" not in str(error):
            raise
        print("  Ray's node timed out starting: once more", file=sys.stderr, flush=True)
        name += "-again"
        sweep = common.run_sweep(path, uri, folder, name)
    runs = common.trial_runs(uri, sweep.summary["parent_run_id"])
    tracker = Tracker.connect(uri)
    details = load_sweep(tracker, find_sweep(tracker, name), curves=False)
    return Outcome(len(runs), sum(run.data.metrics.get("train_flops", 0.0) for run in runs),
                   sum(run.data.metrics.get("compute_seconds", 0.0) for run in runs), sweep.wall_seconds,
                   answers(verdict(details), details), sweep.summary.get("stopped"))


def main() -> None:
    args = common.parser(__doc__.splitlines()[0])
    args.add_argument("--trials", type=int, help="the budget (default 16; 8 with --quick)")
    args.add_argument("--sample", type=int, default=400, help="commits (default 400)")
    args.add_argument("--searcher", choices=("random", "grid"), default="random",
                      help="sweep.searcher (default random; grid tries every grid point before repeating one)")
    args.add_argument("--seeds", type=int, help="searcher seeds per space (default 3; 1 with --quick)")
    args.add_argument("--min-trials", type=int, help="sweep.stop.min_trials (default 6, the spec's; 3 with --quick)")
    args.add_argument("--patience", type=int, help="sweep.stop.patience (default 3, the spec's; 2 with --quick)")
    options = args.parse_args()
    options.trials = options.trials or (8 if options.quick else 16)
    options.seeds = options.seeds or (1 if options.quick else 3)
    options.min_trials = options.min_trials or (3 if options.quick else 6)
    options.patience = options.patience or (2 if options.quick else 3)
    from sweeper.backbone import embedded_backbone_dir

    embedded_backbone_dir()  # built once and cached: no sweep pays for building it

    rows, misses = [], 0
    with tempfile.TemporaryDirectory(prefix="bench-stop-") as temp:
        folder = Path(temp)
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        for space in SPACES:
            for seed in range(options.seeds):
                full = run(space, seed, "never", options, folder, uri)
                decided = run(space, seed, "decided", options, folder, uri)
                flops_saved = 100 * (1 - decided.flops / full.flops) if full.flops else 0.0
                seconds_saved = 100 * (1 - decided.seconds / full.seconds) if full.seconds else 0.0
                same = [decided.answers[index] == full.answers[index] for index in range(3)]
                met = flops_saved >= TARGET_SAVING and all(same)
                misses += not met
                rows.append((space, seed, full.trials, decided.trials, f"{full.flops:.3g}", f"{decided.flops:.3g}",
                             flops_saved, full.seconds, decided.seconds, seconds_saved,
                             *("yes" if flag else "NO" for flag in same), "met" if met else "MISSED",
                             (decided.stopped or {}).get("reason", "not stopped: ran the whole budget")))
    common.print_report("Stop when decided (bench/stop_when_decided.py)", {
        "spec": f"bundled JIT-DP, data.sample {options.sample}, random split valid 0.4, max_length 32, LoRA, "
                "1 epoch, embedded backbone",
        "spaces": "; ".join(f"{name}: {', '.join(space)}" for name, space in SPACES.items()),
        "sweep": f"budget {options.trials} trials, one at a time, {options.searcher} searcher (seeds "
                 f"0..{options.seeds - 1}), "
                 f"no pruner; decided: min_trials {options.min_trials}, patience {options.patience}",
        "tracking": "local SQLite MLflow store",
    }, [
        ("Full budget (when: never) against when: decided",
         ("space", "seed", "trials full", "trials decided", "FLOPs full", "FLOPs decided", "FLOPs saved %",
          "compute s full", "compute s decided", "seconds saved %", "same baseline answer", "same factors",
          "same choice", f"goal (>= {TARGET_SAVING:g} % FLOPs, same verdict)", "why it stopped"), rows),
        ("Summary", ("figure", "value"), [("pairs meeting the goal", f"{len(rows) - misses} of {len(rows)}")]),
    ])


if __name__ == "__main__":
    main()
