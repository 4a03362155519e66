"""Where a sweep's overhead per trial goes: the trials of `overhead.py`, bare and as a sweep, from timing events.

`overhead.py` gives the total; this script splits it. It runs the same LoRA grid (a) bare, `run_trial` one after
another, and (b) as a sweep (`sweeper run`: Ray Tune, Optuna, a real `mlflow server`), each with `SWEEPER_TIMINGS`
naming a file: the package then writes a timing event (a JSON line) for each piece of work (see
`sweeper/timings.py`), in the driver and in the trials' worker processes alike, and this script reads them back:

- in the trial's process (`trainable.run`, with the trial's own training + evaluation seconds): reading the data
  (`data.read`, once per worker: the trainable keeps it), preparing the data and the model (`trial.prepare`,
  `trial.model`), each evaluation and checkpoint save (`trial.evaluate`, `trial.checkpoint`), the time the trial
  waits in `tune.report` (`trainable.report`: Ray reports synchronously, the trial waits there until the driver has
  processed its result), writing the artifacts (`trial.artifacts`), the process id (one for every trial: Ray reused
  the worker);
- in the driver: Optuna's suggest, pruning checks and tell (`optuna.*`), the MLflow callbacks (`callbacks.*`) and
  each MLflow request, with the thread it ran on (`mlflow.*`, made by the tracking writer's thread).

It prints the mean per trial of each piece, bare and sweep. Timings depend on everything else on the machine: compare
pieces measured in the same run, and repeat when they look noisy.

    python bench/overhead_profile.py            # 4 trials of about 30 s each: about 5 minutes on 2 cores
    python bench/overhead_profile.py --quick    # 2 tiny trials: checks the script runs
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import common
from sweeper.timings import VARIABLE, timed

Event = dict[str, Any]
BARE_TRIAL, SWEEP_TRIAL = "bench.trial", "trainable.run"  # one event per trial, with its compute_seconds


def events(path: Path) -> list[Event]:
    """The timing events in `path`, each with its `end`, in order of their start."""
    items = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for item in items:
        item["end"] = item["start"] + item["seconds"]
    return sorted(items, key=lambda item: item["start"])


def within(items: list[Event], start: float, end: float, prefix: str = "") -> list[Event]:
    """The events that started between `start` and `end` (and whose phase starts with `prefix`)."""
    return [item for item in items if start <= item["start"] <= end and item["phase"].startswith(prefix)]


def total(items: list[Event], *phases: str, final: bool | None = None) -> float:
    """Seconds spent in `phases` (with `final`: only the final `trainable.report`, or only the others)."""
    return sum(item["seconds"] for item in items
               if item["phase"] in phases and (final is None or bool(item.get("final")) == final))


def nested(items: list[Event], inner: str, outer: str) -> float:
    """Seconds of `inner` events that ran inside an `outer` event of the same process."""
    outers = [item for item in items if item["phase"] == outer]
    return sum(item["seconds"] for item in items if item["phase"] == inner and any(
        o["pid"] == item["pid"] and o["start"] <= item["start"] <= o["end"] for o in outers))


def mean(values: list[float]) -> float:
    return statistics.mean(values) if values else float("nan")


def split_trials(items: list[Event]) -> list[dict[str, float]]:
    """Per trial (one `bench.trial` or `trainable.run` event each): the pieces, in seconds."""
    trials = [item for item in items if item["phase"] in (BARE_TRIAL, SWEEP_TRIAL)]
    rows = []
    for index, trial in enumerate(trials):
        inside = within(items, trial["start"], trial["end"] + 0.001)
        row = {
            "wall": trial["seconds"],
            "compute": trial["compute_seconds"],
            "read": total(inside, "data.read"),
            "prepare": total(inside, "trial.prepare", "trial.model") - nested(inside, "data.read", "trial.prepare"),
            "save": total(inside, "trial.checkpoint"),
            "report": total(inside, "trainable.report", final=False),
            "final": total(inside, "trainable.report", final=True),
            "artifacts": total(inside, "trial.artifacts"),
            "evaluations": float(sum(1 for item in inside if item["phase"] == "trial.evaluate")),
            "pid": float(trial["pid"]),
        }
        row["non_compute"] = row["wall"] - row["compute"]
        if trial["phase"] == SWEEP_TRIAL:
            row["optuna_report"] = total(inside, "optuna.report_and_check")
            if index + 1 < len(trials):  # the trial's own driver events, and the switch to the next one
                following = trials[index + 1]["start"]
                switch = within(items, trial["end"], following)
                requests = [item for item in inside + switch if item["phase"].startswith("mlflow.")]
                row["mlflow_main"] = sum(item["seconds"] for item in requests if item["thread"] == "MainThread")
                row["mlflow_writer"] = sum(item["seconds"] for item in requests if item["thread"] != "MainThread")
                row["switch"] = following - trial["end"]
                row["suggest"] = total(switch, "optuna.suggest")
                row["tell"] = total(switch, "optuna.on_trial_complete")
                row["callbacks_switch"] = total(switch, "callbacks.on_trial_complete", "callbacks.on_trial_start")
        rows.append(row)
    return rows


def run_bare(spec_path: Path) -> None:
    """Every trial of the grid through `run_trial`, one after another, each in a `bench.trial` event."""
    from sweeper.spec import load_spec
    from sweeper.trial import run_trial

    loaded = load_spec(spec_path)
    for rate in loaded.search["lr"].choice or []:
        with timed(BARE_TRIAL) as event:
            result = run_trial(loaded.trial({"lr": rate}))
            event["compute_seconds"] = result.costs["train_seconds"] + result.costs["eval_seconds"]
        print(f"  bare trial lr={rate}: done", file=sys.stderr, flush=True)


def main() -> None:
    trials, sample, epochs, max_length = common.lora_grid_sizes(__doc__.splitlines()[0])

    with tempfile.TemporaryDirectory(prefix="bench-overhead-profile-") as temp:
        folder = Path(temp)
        spec = common.lora_grid_spec("bench-overhead-profile", trials, sample, epochs, max_length,
                                     folder / "ray-results", max_concurrent=1)
        spec_path = common.write_spec(folder, spec)
        from sweeper.backbone import embedded_backbone_dir

        embedded_backbone_dir()  # built once and cached: neither mode pays for building it
        print(f"(a) bare: {trials} trials through run_trial", file=sys.stderr, flush=True)
        os.environ[VARIABLE] = str(folder / "bare.jsonl")
        try:
            run_bare(spec_path)
        finally:
            del os.environ[VARIABLE]
        bare = split_trials(events(folder / "bare.jsonl"))
        print(f"(b) sweeper run: {trials} trials, MLflow server", file=sys.stderr, flush=True)
        with common.mlflow_server(folder / "mlflow") as uri:
            common.run_sweep(spec_path, uri, folder, "bench-overhead-profile",
                             env={**os.environ, VARIABLE: str(folder / "sweep.jsonl")})
        sweep = split_trials(events(folder / "sweep.jsonl"))

    def both(key: str) -> tuple[Any, Any]:
        return mean([row.get(key, 0.0) for row in bare]), mean([row.get(key, 0.0) for row in sweep])

    def only(key: str) -> float:
        return mean([row[key] for row in sweep if key in row])

    evaluations = mean([row["evaluations"] for row in sweep])
    non_compute_bare, non_compute_sweep = both("non_compute")
    overhead = non_compute_sweep + only("switch") - non_compute_bare
    rows = [
        ("trial wall (trainable start to end; bare: run_trial)", *both("wall"), "trainable.run, bench.trial"),
        ("  training + evaluation (the trial's own train_seconds + eval_seconds)", *both("compute"), "run_trial"),
        ("  everything else in the trial", non_compute_bare, non_compute_sweep, "wall - compute"),
        ("    read the data file (sweep: once per worker)", *both("read"), "data.read"),
        ("    prepare data (sample, split, encode) and the model", *both("prepare"),
         "trial.prepare - data.read, trial.model"),
        (f"    checkpoint saves ({evaluations:g} evaluations)", *both("save"), "trial.checkpoint"),
        ("    waiting in tune.report for the driver, per-evaluation reports", "-", only("report"), "trainable.report"),
        ("    waiting in tune.report, final report", "-", only("final"), "trainable.report (final)"),
        ("    writing the artifacts (bare: none asked for)", *both("artifacts"), "trial.artifacts"),
        ("trial switch (trainable end to the next one's start)", "-", only("switch"), "trainable.run"),
        ("  Optuna suggest", "-", only("suggest"), "optuna.suggest"),
        ("  Optuna tell", "-", only("tell"), "optuna.on_trial_complete"),
        ("  MLflow callbacks on the driver thread (complete + start)", "-", only("callbacks_switch"),
         "callbacks.on_trial_*"),
        ("Optuna pruning checks per trial (driver, while the trial waits)", "-", only("optuna_report"),
         "optuna.report_and_check"),
        ("MLflow requests per trial on the driver thread (the trial or the switch waits)", "-", only("mlflow_main"),
         "mlflow.*"),
        ("MLflow requests per trial on the writer thread (nothing waits)", "-", only("mlflow_writer"), "mlflow.*"),
        ("overhead per trial: sweep (non-compute + switch) - bare non-compute", "-", overhead, "-"),
        ("  % of a bare trial", "-", 100 * overhead / both("wall")[0], "-"),
    ]
    workers = len({row["pid"] for row in sweep})
    common.print_report("Where the overhead per trial goes (bench/overhead_profile.py)", {
        "trials": f"{trials} LoRA trials (grid over lr), one at a time, pruner none (as overhead.py)",
        "data": f"bundled:jitdp, sample {sample}, max_length {max_length}, epochs {epochs}, 1 thread",
        "tracking (b)": "mlflow server, SQLite backend, local artifacts",
        "worker processes (b)": f"{workers} for {len(sweep)} trials" + (" (reused)" if workers < len(sweep) else ""),
    }, [("Mean seconds per trial", ("piece", "bare s", "sweep s", "measured around"), rows)])


if __name__ == "__main__":
    main()
