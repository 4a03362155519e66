"""Where a sweep's overhead per trial goes: the trials of `overhead.py`, bare and as a sweep, with timestamps.

`overhead.py` gives the total; this script splits it. It runs the same LoRA grid (a) bare, `run_trial` one after
another, and (b) as a sweep (`run_sweep` in this process: Ray Tune, Optuna, a real `mlflow server`), with timers
wrapped around the pieces (module attributes replaced at run time; nothing in the package changes):

- in the trial's process: the trainable's start, reading and preparing the data, each checkpoint save, the time a
  trial waits in `tune.report` (Ray reports synchronously: the trial waits there until the driver has processed
  its result), writing the artifacts, the process id (one id for every trial: Ray reused the worker);
- in the driver: Optuna's `suggest` and pruning checks, the MLflow callbacks and each MLflow request (and on which
  thread it ran), Ray's trial switch.

It prints the mean per trial of each piece, bare and sweep. Timings depend on everything else on the machine: compare
pieces measured in the same run, and repeat when they look noisy.

    python bench/overhead_profile.py            # 4 trials of about 30 s each: about 5 minutes on 2 cores
    python bench/overhead_profile.py --quick    # 2 tiny trials: checks the script runs
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import common

EVENTS_VARIABLE = "SWEEPER_PROFILE_EVENTS"


def log(event: str, **fields: Any) -> None:
    """Append one event (JSON line) to the events file: one clock for driver and workers on one machine."""
    line = json.dumps({"t": time.time(), "pid": os.getpid(), "thread": threading.current_thread().name, "ev": event,
                       **fields}) + "\n"
    descriptor = os.open(os.environ[EVENTS_VARIABLE], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(descriptor, line.encode())
    finally:
        os.close(descriptor)


def timed(owner: Any, name: str, event: str, fields: Callable[..., dict[str, Any]] | None = None) -> None:
    """Replace `owner.name` by a wrapper that logs when each call started and how long it took."""
    original = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.time()
        try:
            return original(*args, **kwargs)
        finally:
            log(event, start=started, dur=time.time() - started, **(fields(*args, **kwargs) if fields else {}))

    setattr(owner, name, wrapper)


def time_trial_phases() -> None:
    """Timers in `sweeper.trial` and `sweeper.sweep.trainable` of this process (once)."""
    import torch

    import sweeper.sweep.trainable as trainable
    import sweeper.trial as trial

    if getattr(trial, "_profiled", False):
        return
    trial._profiled = True  # type: ignore[attr-defined]
    for name in ("prepare_data", "write_artifacts", "load_state", "save_trained"):
        if hasattr(trial, name):
            timed(trial, name, f"w.{name}")
    for name in ("load_classifier", "apply_method"):
        if hasattr(trial, name):
            timed(trial, name, "w.model")
    timed(trial, "read_records", "w.read_in_prepare")  # bare: prepare_data reads the file itself
    if hasattr(trainable, "read_dataset"):
        timed(trainable, "read_dataset", "w.read_dataset")  # sweep: the trainable hands it the (cached) records
    timed(torch, "save", "w.torch_save")


def profiled_train(config: dict[str, Any]) -> None:
    """The sweep's trainable with timers; Ray pickles it by reference, as it does `train_in_ray`."""
    import sweeper.sweep.trainable as trainable

    started = time.time()
    time_trial_phases()
    if not getattr(trainable, "_profiled", False):
        trainable._profiled = True  # type: ignore[attr-defined]
        real_tune, real_run_trial = trainable.tune, trainable.run_trial

        class TimedTune:
            def __getattr__(self, name: str) -> Any:
                return getattr(real_tune, name)

            def report(self, metrics: dict[str, Any], checkpoint: Any = None) -> None:
                clock = time.time()
                try:
                    real_tune.report(metrics, checkpoint=checkpoint)
                finally:
                    log("w.tune_report", start=clock, dur=time.time() - clock, final=bool(metrics.get("final")))

        def run_trial(config: Any, output: Any, report: Callable[[Any], None], **options: Any) -> Any:
            def timed_report(evaluation: Any) -> None:
                def save(folder: Path) -> None:
                    clock = time.time()
                    evaluation.save(folder)
                    log("w.checkpoint_save", start=clock, dur=time.time() - clock,
                        bytes=sum(path.stat().st_size for path in Path(folder).rglob("*") if path.is_file()))

                report(dataclasses.replace(evaluation, save=save))

            result = real_run_trial(config, output, timed_report, **options)
            log("w.trial_compute", train=result.costs["train_seconds"], eval=result.costs["eval_seconds"])
            return result

        trainable.tune, trainable.run_trial = TimedTune(), run_trial
    log("w.start", start=started)
    try:
        trainable.train_in_ray(config)
    finally:
        log("w.end", start=started, dur=time.time() - started)


def time_driver() -> None:
    """Timers in the driver: callbacks, Optuna, MLflow requests, Ray's trial switch; the sweep runs `profiled_train`."""
    from ray.tune.execution import tune_controller

    import sweeper.sweep.driver as driver
    from sweeper.sweep import callbacks, search as pruning
    from sweeper.tracking.client import Tracker

    # This file again, under its module name: Ray then pickles `profiled_train` by reference (as it does
    # `train_in_ray`), and the workers import it from this folder, as they import the package.
    import overhead_profile

    driver.train_in_ray = overhead_profile.profiled_train
    for name in ("on_trial_start", "on_trial_result", "on_trial_complete", "on_trial_error"):
        timed(callbacks.TrackingCallback, name, f"d.tracking.{name}")
    timed(pruning.OptunaSearcher, "suggest", "d.optuna.suggest")
    timed(pruning.OptunaSearcher, "on_trial_complete", "d.optuna.tell")
    timed(pruning.OptunaSearcher, "report_and_check", "d.optuna.report")
    for name in ("start_trial", "log_metrics", "set_tags", "log_artifacts", "log_file", "end_run"):
        timed(Tracker, name, "d.mlflow")
    timed(tune_controller.TuneController, "_schedule_trial_reset", "d.ray.reset")


def events(path: Path) -> list[dict[str, Any]]:
    items = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for item in items:
        item.setdefault("start", item["t"])
        item.setdefault("dur", 0.0)
    return sorted(items, key=lambda item: item["start"])


def within(items: list[dict[str, Any]], start: float, end: float, prefix: str = "") -> list[dict[str, Any]]:
    return [item for item in items if start <= item["start"] <= end and item["ev"].startswith(prefix)]


def total(items: list[dict[str, Any]], *names: str, **match: Any) -> float:
    return sum(item["dur"] for item in items if item["ev"] in names and all(item.get(k) == v for k, v in match.items()))


def mean(values: list[float]) -> float:
    return statistics.mean(values) if values else float("nan")


def split_trials(items: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Per trial (one `w.end` each; bare trials have `b.trial`): the pieces, in seconds."""
    trials = [item for item in items if item["ev"] in ("w.end", "b.trial")]
    rows = []
    for index, trial in enumerate(trials):
        start, end = trial["start"], trial["start"] + trial["dur"]
        inside = within(items, start, end + 0.001)
        compute = next(item for item in inside if item["ev"] == "w.trial_compute")
        evaluations = sum(1 for item in inside if item["ev"] == "w.checkpoint_save")
        row = {
            "wall": trial["dur"],
            "compute": compute["train"] + compute["eval"],
            "read": total(inside, "w.read_dataset", "w.read_in_prepare"),
            "prepare": total(inside, "w.prepare_data", "w.model") - total(inside, "w.read_in_prepare"),
            "save": total(inside, "w.checkpoint_save"),
            "report": total(inside, "w.tune_report", final=False),
            "final": total(inside, "w.tune_report", final=True),
            "artifacts": total(inside, "w.write_artifacts"),
            "evaluations": float(evaluations),
            "pid": float(trial["pid"]),
        }
        row["non_compute"] = row["wall"] - row["compute"]
        if trial["ev"] == "w.end":
            following = trials[index + 1]["start"] if index + 1 < len(trials) else None
            driver = within(items, start, end + 0.001, "d.")
            row["optuna_report"] = total(driver, "d.optuna.report")
            if following is not None:  # the trial's own events, and the switch to the next one
                switch = within(items, end, following, "d.")
                row["mlflow_main"] = sum(item["dur"] for item in driver + switch
                                         if item["ev"] == "d.mlflow" and item["thread"] == "MainThread")
                row["mlflow_writer"] = sum(item["dur"] for item in driver + switch
                                           if item["ev"] == "d.mlflow" and item["thread"] != "MainThread")
                row["switch"] = following - end
                row["suggest"] = total(switch, "d.optuna.suggest")
                row["tell"] = total(switch, "d.optuna.tell")
                row["callbacks_switch"] = total(switch, "d.tracking.on_trial_complete", "d.tracking.on_trial_start")
        rows.append(row)
    return rows


def run_bare(spec_path: Path) -> None:
    from sweeper.spec import load_spec
    from sweeper.trial import run_trial

    time_trial_phases()
    loaded = load_spec(spec_path)
    for rate in loaded.search["lr"].choice or []:
        started = time.time()
        result = run_trial(loaded.trial({"lr": rate}))
        log("w.trial_compute", train=result.costs["train_seconds"], eval=result.costs["eval_seconds"])
        log("b.trial", start=started, dur=time.time() - started)
        print(f"  bare trial lr={rate}: {time.time() - started:.1f} s", file=sys.stderr, flush=True)


def run_profiled_sweep(spec_path: Path, folder: Path) -> None:
    import ray

    from sweeper.sweep.driver import run_sweep
    from sweeper.spec import load_spec

    time_driver()
    os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="rt-", dir="/tmp")  # its own embedded Ray, as overhead.py
    try:
        with common.mlflow_server(folder / "mlflow") as uri:
            started = time.perf_counter()
            run_sweep(load_spec(spec_path), spec_path.read_text(), uri, "bench-overhead-profile")
            print(f"  sweep: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    finally:
        ray.shutdown()
        common.remove(Path(os.environ.pop("RAY_TMPDIR")))


def main() -> None:
    args = common.parser(__doc__.splitlines()[0])
    args.add_argument("--trials", type=int, help="trials in each mode (default 4; 2 with --quick)")
    options = args.parse_args()
    trials = options.trials or (2 if options.quick else 4)
    sample, epochs, max_length = (120, 1, 64) if options.quick else (560, 3, 128)

    with tempfile.TemporaryDirectory(prefix="bench-overhead-profile-") as temp:
        folder = Path(temp)
        spec = common.lora_grid_spec("bench-overhead-profile", trials, sample, epochs, max_length,
                                     folder / "ray-results", max_concurrent=1)
        spec_path = common.write_spec(folder, spec)
        from sweeper.backbone import embedded_backbone_dir

        embedded_backbone_dir()
        os.environ[EVENTS_VARIABLE] = str(folder / "bare.jsonl")
        print(f"(a) bare: {trials} trials through run_trial", file=sys.stderr, flush=True)
        run_bare(spec_path)
        bare = split_trials(events(folder / "bare.jsonl"))
        os.environ[EVENTS_VARIABLE] = str(folder / "sweep.jsonl")
        print(f"(b) sweep: {trials} trials, MLflow server", file=sys.stderr, flush=True)
        run_profiled_sweep(spec_path, folder)
        sweep = split_trials(events(folder / "sweep.jsonl"))

    def both(key: str) -> tuple[Any, Any]:
        return mean([row.get(key, 0.0) for row in bare]), mean([row.get(key, 0.0) for row in sweep])

    def only(key: str) -> float:
        return mean([row[key] for row in sweep if key in row])

    evaluations = mean([row["evaluations"] for row in sweep])
    non_compute_bare, non_compute_sweep = both("non_compute")
    overhead = non_compute_sweep + only("switch") - non_compute_bare
    rows = [
        ("trial wall (trainable start to end; bare: run_trial)", *both("wall"), "timer"),
        ("  training + evaluation (the trial's own train_seconds + eval_seconds)", *both("compute"), "run_trial"),
        ("  everything else in the trial", non_compute_bare, non_compute_sweep, "wall - compute"),
        ("    read the data file (sweep: once per worker)", *both("read"), "read_records, read_dataset"),
        ("    prepare data (sample, split, encode) and the model", *both("prepare"), "prepare_data - read, model"),
        (f"    checkpoint saves ({evaluations:g} evaluations)", *both("save"), "Evaluation.save"),
        ("    waiting in tune.report for the driver, per-evaluation reports", "-", only("report"), "tune.report"),
        ("    waiting in tune.report, final report", "-", only("final"), "tune.report"),
        ("    writing the artifacts (bare: none asked for)", *both("artifacts"), "write_artifacts"),
        ("trial switch (trainable end to the next one's start)", "-", only("switch"), "timer"),
        ("  Optuna suggest", "-", only("suggest"), "OptunaSearcher.suggest"),
        ("  Optuna tell", "-", only("tell"), "OptunaSearcher.on_trial_complete"),
        ("  MLflow callbacks on the driver thread (complete + start)", "-", only("callbacks_switch"),
         "TrackingCallback"),
        ("Optuna pruning checks per trial (driver, while the trial waits)", "-", only("optuna_report"),
         "OptunaSearcher.report_and_check"),
        ("MLflow requests per trial on the driver thread (the trial or the switch waits)", "-", only("mlflow_main"),
         "Tracker"),
        ("MLflow requests per trial on the writer thread (nothing waits)", "-", only("mlflow_writer"), "Tracker"),
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
