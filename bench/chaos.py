"""Chaos: a sweep on a local multi-node Ray cluster whose worker nodes are killed again and again, each when it hosts
a trial known to be mid-run.

The same run as `tests/test_chaos.py` (see `tests/chaos.py`), as long as you like: a head without CPUs and two
worker nodes of one CPU each on loopback, token authentication on, a real `mlflow server`. The sweep runs with a
hold point (trials wait after each evaluation but their last while the chaos goes on); `--kills` times, the node of
a held trial chosen at random (`--seed`) is killed (SIGKILL to the whole node) and a fresh node joins. Kills act
on events, not on the clock, so all of them happen on any machine. Then the hold is lifted, the sweep runs to its
end and is checked: every trial in a final state, no run RUNNING, one MLflow run per Optuna trial, the study's
states agreeing with MLflow's, each run's metric steps 1..n once each, the counts adding up to `--trials`. Only the
nodes started here are killed; any other Ray on the machine is left alone. Exits 1 when a check fails.

    python bench/chaos.py                                    # 3 kills, 6 trials: about 3 minutes on 2 cores
    python bench/chaos.py --kills 10 --trials 20 --seed 7    # at most 2 kills per trial of 3 epochs
    python bench/chaos.py --quick                            # 1 kill, 2 trials: about 2 minutes, checks it runs
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import common

sys.path.insert(0, str(common.REPO / "tests"))

from chaos import run_chaos  # noqa: E402


def main() -> int:
    args = common.parser(__doc__.splitlines()[0])
    args.add_argument("--kills", type=int, default=3, help="worker nodes to kill (default 3)")
    args.add_argument("--trials", type=int, default=6, help="trials in the sweep (default 6)")
    args.add_argument("--epochs", type=int, default=3, help="epochs per trial, 2 or 3 (default 3)")
    args.add_argument("--seed", type=int, default=0, help="seeds which held trial's node dies (default 0)")
    options = args.parse_args()
    kills, trials = (1, 2) if options.quick else (options.kills, options.trials)

    from sweeper.backbone import embedded_backbone_dir

    embedded_backbone_dir()  # build the toy backbone before any node needs it
    with tempfile.TemporaryDirectory(prefix="chaos-") as temp, common.mlflow_server(Path(temp) / "mlflow") as uri:
        outcome = run_chaos(Path(temp) / "sweep", uri, trials, kills, options.seed, options.epochs)
    common.print_report("Chaos (bench/chaos.py)", {
        "cluster": "local: ray start --head --num-cpus 0, 2 worker nodes --num-cpus 1, token auth, own --temp-dir each",
        "chaos": f"{kills} worker nodes killed (SIGKILL to every process of the node), each hosting a trial held "
                 f"after an evaluation, a fresh node after each; seed {options.seed}",
        "sweep": f"{trials} LoRA / adapter trials, {options.epochs} epochs, max_concurrent 2, median pruner",
    }, [
        ("What happened", ("figure", "value"), [
            ("worker nodes killed", len(outcome.kills)),
            ("kills at (s after the sweep started)", ", ".join(f"{at:.0f}" for at in outcome.kills) or "-"),
            ("sweep wall time s", outcome.seconds),
            ("trials by state", outcome.summary.get("trials")),
            ("retries from a checkpoint (all trials)", outcome.retries),
        ]),
        ("Checks", ("check", "figure", "holds"),
         [(check.name, check.figure, "yes" if check.ok else "NO") for check in outcome.checks]),
    ])
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
