"""Compute saved by pruning: the same seeded sweep with Optuna's median pruner and with no pruner.

The sweep is search_spaces/smoke.yaml (full / adapter / lora, 14 trials here, median pruner after 3 trials, no
repeats) with trials of 6 epochs and an evaluation every half epoch (`eval_every_steps`), so the pruner's rungs fall
inside the first epoch, run one trial at a time with a seeded random searcher: both runs try the very same
configurations in the same order; only the pruner differs. Compute is read back from the MLflow runs (a local SQLite
store): trial-epochs are where each run's `epoch` metric ended (fractions of an epoch for a trial pruned mid-epoch),
seconds its `compute_seconds` (training plus evaluation time, up to where a pruned trial stopped). It also checks that
no trial was recorded as pruned at its last evaluation (which saves nothing and loses a complete result).

    python bench/pruning.py             # the smoke sweep on 120 commits, 6 epochs: about 10 minutes on 2 cores
    python bench/pruning.py --sample 600 --searcher tpe    # the smoke spec's data as is, TPE (about 30 minutes)
    python bench/pruning.py --pruner '{kind: successive_halving, min_resource: 1, reduction_factor: 3}'
    python bench/pruning.py --quick     # 4 tiny trials: checks the script runs
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import common

SMOKE = common.REPO / "search_spaces" / "smoke.yaml"
TARGET_SAVING = 50.0  # % less compute
TARGET_QUALITY = 0.98  # of the best metric without pruning


@dataclass(frozen=True)
class Outcome:
    """One sweep: wall time, best metric, and per trial (number, method, state, epochs, compute seconds,
    evaluations)."""

    wall_seconds: float
    best: float
    trials: list[tuple[int, str, str, float, float, int]]

    @property
    def epochs(self) -> float:
        return sum(trial[3] for trial in self.trials)

    @property
    def seconds(self) -> float:
        return sum(trial[4] for trial in self.trials)


def smoke_spec(pruner: dict[str, Any], options: Any, storage: Path) -> dict[str, Any]:
    """The smoke spec (one CPU thread per trial), one trial at a time with a seeded searcher, `pruner` as given."""
    spec = common.load_yaml(SMOKE)
    spec["name"] = "bench-pruning"
    spec["data"]["sample"] = options.sample
    if options.quick:
        spec["data"]["max_length"] = 64
    spec["defaults"]["epochs"] = options.epochs
    spec["defaults"]["eval_every_steps"] = options.eval_every_steps
    spec["sweep"].update(trials=options.trials, searcher=options.searcher, seed=options.seed, max_concurrent=1,
                         pruner=pruner, repeats=0)  # pruning saves on the search: no repeats after it
    spec["tracking"] = {"storage": str(storage)}
    return spec


def run(name: str, pruner: dict[str, Any], options: Any, folder: Path, uri: str) -> Outcome:
    print(f"  sweep with pruner {pruner['kind']} ...", file=sys.stderr, flush=True)
    spec = common.write_spec(folder, smoke_spec(pruner, options, folder / "ray-results"), f"{name}.yaml")
    sweep = common.run_sweep(spec, uri, folder, name)
    trials = []
    for run in common.trial_runs(uri, sweep.summary["parent_run_id"]):
        evaluations = common.metric_history_length(uri, run.info.run_id, "epoch")
        trials.append((int(run.data.tags.get("optuna.trial", -1)), run.data.tags.get("sweeper.method", "?"),
                       run.data.tags.get("sweeper.state", "?"), run.data.metrics.get("epoch", 0.0),
                       run.data.metrics.get("compute_seconds", 0.0), evaluations))
    return Outcome(sweep.wall_seconds, float(sweep.summary["best_value"]), sorted(trials))


def main() -> None:
    args = common.parser(__doc__.splitlines()[0])
    args.add_argument("--trials", type=int, help="trials per sweep (default 14; 4 with --quick)")
    args.add_argument("--sample", type=int, help="commits (default 120; the smoke spec has 600; 80 with --quick)")
    args.add_argument("--searcher", choices=["random", "tpe"], default="random",
                      help="random (default) tries the same configurations in both sweeps; tpe adapts to pruning")
    args.add_argument("--seed", type=int, default=0)
    args.add_argument("--epochs", type=int, help="epochs per trial (default 6; 2 with --quick)")
    args.add_argument("--eval-every-steps", type=int,
                      help="an evaluation (a pruner step) every N optimiser steps (default: about half an epoch)")
    args.add_argument("--pruner", help="the pruner as a YAML mapping (default: the spec's median pruner), "
                                       "e.g. '{kind: percentile, percentile: 25, startup_trials: 3}'")
    options = args.parse_args()
    options.trials = options.trials or (4 if options.quick else 14)
    options.sample = options.sample or (80 if options.quick else 120)
    options.epochs = options.epochs or (2 if options.quick else 6)
    steps_per_epoch = -(-round(options.sample * 0.75) // 16)  # the smoke spec: 25 % validation, batch 16
    options.eval_every_steps = options.eval_every_steps or max(1, steps_per_epoch // 2)
    median = yaml.safe_load(options.pruner) if options.pruner else common.load_yaml(SMOKE)["sweep"]["pruner"]
    kind = median["kind"]
    from sweeper.backbone import embedded_backbone_dir

    embedded_backbone_dir()  # built once and cached: neither sweep pays for building it

    with tempfile.TemporaryDirectory(prefix="bench-pruning-") as temp:
        folder = Path(temp)
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        pruned = run("pruned", median, options, folder, uri)
        unpruned = run("unpruned", {"kind": "none"}, options, folder, uri)

    saving_epochs = 100 * (1 - pruned.epochs / unpruned.epochs)
    planned = max(trial[5] for trial in unpruned.trials)
    late = [trial[0] for trial in pruned.trials if trial[2] == "pruned" and trial[5] >= planned]
    saving_seconds = 100 * (1 - pruned.seconds / unpruned.seconds)
    quality = pruned.best / unpruned.best
    by_number = {trial[0]: trial for trial in unpruned.trials}
    common.print_report("Pruning savings (bench/pruning.py)", {
        "spec": f"search_spaces/smoke.yaml, data.sample {options.sample}, epochs {options.epochs}, "
                f"eval_every_steps {options.eval_every_steps} ({planned} evaluations per trial)"
                + (", max_length 64" if options.quick else ""),
        "sweep": f"{options.trials} trials, one at a time, searcher {options.searcher} (seed {options.seed}), "
                 "1 thread per trial",
        "pruner": f"{kind} " + ", ".join(f"{key} {value}" for key, value in median.items() if key != "kind"),
        "tracking": "local SQLite MLflow store",
    }, [
        ("Per sweep", ("pruner", "trial-epochs", "compute s", "sweep wall s", "best auc"), [
            (kind, pruned.epochs, pruned.seconds, pruned.wall_seconds, pruned.best),
            ("none", unpruned.epochs, unpruned.seconds, unpruned.wall_seconds, unpruned.best),
        ]),
        (f"{kind} pruner against none", ("figure", "value", "target", "met"), [
            ("compute saved, trial-epochs %", saving_epochs, f">= {TARGET_SAVING:g} %",
             common.verdict(saving_epochs, TARGET_SAVING)),
            ("compute saved, seconds %", saving_seconds, f">= {TARGET_SAVING:g} %",
             common.verdict(saving_seconds, TARGET_SAVING)),
            (f"best auc, {kind} / none", quality, f">= {TARGET_QUALITY:g}", common.verdict(quality, TARGET_QUALITY)),
            ("trials recorded as pruned at their last evaluation", len(late), "0",
             common.verdict(len(late), 0, at_least=False)),
        ]),
        (f"Per trial ({kind} pruner | none)", ("trial", "method", "state", "epochs", "compute s", "evaluations",
                                              "epochs (none)", "compute s (none)"),
         [(number, method, state, epochs, seconds, evaluations,
           *(by_number[number][3:5] if number in by_number else ("-", "-")))
          for number, method, state, epochs, seconds, evaluations in pruned.trials]),
    ])


if __name__ == "__main__":
    main()
