"""Frozen-prefix cache: the same trials with the cache on and off, side by side in one run, then the same for a sweep.

Per method (LoRA and bottleneck adapters on the embedded backbone's top layer only, `layers: "3"` of 0-3), on the
shared JIT-DP data (or the bundled sample where it is missing), the same seed and one thread, four variants:

    off          `cache_frozen: off`: the frozen layers run at every step, in train mode (dropout on), as before
    off, eval    no cache, the frozen layers kept in eval mode: the computation the cache replaces
    on, first    `cache_frozen: auto`, the method's first cached trial: the first of all builds the cache (as the
                 first trial of a node does); the adapters' reuses the LoRA trial's (same backbone, data and layer)
    on, again    the same again: the cache is read (every later trial of the node)

Figures: seconds per epoch after the first (training + evaluation, from the trial's own clock), the wall of the
whole trial (loading, the cache build, every epoch), their ratios against `off`, and the validation metrics of the
cached trials against `off, eval` (the same computation: equal up to float rounding, as the cached states come from
differently padded batches than the uncached run's). Then a sweep of N LoRA trials (a grid of learning rates,
`sweeper run`, one trial at a time, local MLflow store) with the cache on (one fresh cache: the first trial builds,
the others reuse) and off: the sweep's wall and its trials' compute.

Then a decoder-only code-LLM shape (`--decoder`): a Qwen2-shaped model of about 100 M parameters (12 layers,
hidden 768, feed-forward 3072, grouped-query attention; random weights: timing only) with LoRA on its top two
layers, cache off against on (first and again).

    python bench/frozen_cache.py            # 1,600 commits, 256 tokens, 3 epochs: about 25 minutes on 2 cores
    python bench/frozen_cache.py --quick    # tiny: checks the script runs
    python bench/frozen_cache.py --decoder-only   # the decoder-only section alone
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import types
from contextlib import nullcontext
from pathlib import Path
from typing import Any
from unittest import mock

import common

TARGET_SPEEDUP = 2.0  # epochs after the first, cache on against off (goal 3x)
METHODS = {"lora": {"lora.layers": "3", "lora.rank": 8}, "adapter": {"adapter.layers": "3", "adapter.bottleneck": 32}}
COMPARED = ("auc", "f1", "mcc", "eval_loss")


def trial_config(method: str, options: Any, cache: str) -> Any:
    from sweeper.config import TrialConfig

    return TrialConfig().with_overrides({
        "method": method, **METHODS[method], "cache_frozen": cache, "data.path": common.jitdp_data(),
        "data.sample": options.sample, "data.max_length": options.max_length, "data.split.valid": 0.25,
        "epochs": options.epochs, "batch_size": 16, "lr": 1e-3, "class_weighting": True, "seed": 0})


def frozen_kept_in_eval_mode(model: Any, plan: Any, *args: Any, **kwargs: Any) -> Any:
    """Stands in for `use_frozen_cache`: no cache, but the frozen prefix never leaves eval mode."""
    from torch import nn

    from sweeper.cache.frozen import CacheUse, frozen_modules

    hf = model.get_base_model() if hasattr(model, "get_base_model") else model
    for module in frozen_modules(hf, plan.kind, plan.layer):
        module.train = types.MethodType(lambda self, mode=True: nn.Module.train(self, False), module)
    return CacheUse("off: frozen layers kept in eval mode (benchmark)")


def run_variant(config: Any, eval_only: bool = False) -> dict[str, Any]:
    """One trial: its wall, seconds per epoch after the first, metrics and cache note."""
    from sweeper.trial import run_trial

    clocks: list[float] = []
    started = time.perf_counter()
    # `off, eval` exists only here: the package has no setting for it, so the benchmark swaps the cache step out
    patch = mock.patch("sweeper.recipe.use_frozen_cache", frozen_kept_in_eval_mode) if eval_only else nullcontext()
    with patch:
        result = run_trial(config, report=lambda evaluation: clocks.append(evaluation.seconds))
    wall = time.perf_counter() - started
    epochs = [after - before for before, after in zip(clocks, clocks[1:])]
    return {"wall": wall, "epoch": sum(epochs) / len(epochs), "first": clocks[0], "metrics": result.metrics,
            "note": result.tags.get("sweeper.frozen_cache", "")}


def empty_cache(folder: Path, backbone: Path) -> Path:
    """A `$SWEEPER_CACHE` without encoded data or frozen states: only a link to the embedded backbone."""
    folder.mkdir()
    (folder / backbone.name).symlink_to(backbone)
    return folder


def per_trial(options: Any, cache: Path) -> tuple[list[tuple], list[tuple]]:
    """Each method's four variants in this process, with `cache` as `$SWEEPER_CACHE` (the first cached trial
    builds the frozen states)."""
    from sweeper.recipe import prepare_data

    os.environ["SWEEPER_CACHE"] = str(cache)
    rows, equal = [], []
    prepare_data(trial_config("lora", options, "off"))  # the encoding cache, so that no variant pays for encoding
    for method in METHODS:
        variants = {}
        for name, cache, eval_only in [("off", "off", False), ("off, eval", "auto", True),
                                       ("on, first", "auto", False), ("on, again", "auto", False)]:
            print(f"  {method}: {name} ...", file=sys.stderr, flush=True)
            variants[name] = run_variant(trial_config(method, options, cache), eval_only)
            print(f"    {variants[name]['note']}: {variants[name]['wall']:.1f} s", file=sys.stderr, flush=True)
        base = variants["off"]
        for name, figures in variants.items():
            rows.append((method, name, figures["first"], figures["epoch"], base["epoch"] / figures["epoch"],
                         figures["wall"], base["wall"] / figures["wall"], figures["metrics"]["auc"],
                         figures["note"].split(" (")[0]))
        reference = variants["off, eval"]["metrics"]
        for name in ("on, first", "on, again"):
            difference = max(abs(variants[name]["metrics"][key] - reference[key]) for key in COMPARED)
            equal.append((method, name, difference, "yes" if round(difference, 4) == 0 else "no"))
    del os.environ["SWEEPER_CACHE"]
    return rows, equal


DECODER = {"layers": 12, "hidden": 768, "heads": 12, "ffn": 3072}  # about 100 M parameters with its embeddings
DECODER_LORA = {"lora.layers": "10-11", "lora.rank": 8}


def decoder_variants(options: Any, folder: Path) -> tuple[list[tuple], int]:
    """LoRA on the top two layers of a ~100 M decoder-only model, cache off, on (first: builds) and on again."""
    from decoders import tiny_decoder
    from transformers import AutoConfig

    from sweeper.backbone import model_from_config
    from sweeper.config import TrialConfig
    from sweeper.methods import count_parameters

    shape = {"layers": 2, "hidden": 64, "heads": 4, "ffn": 128} if options.quick else DECODER
    backbone = tiny_decoder(folder / "decoder", "qwen2", **shape)
    _, size = count_parameters(model_from_config(AutoConfig.from_pretrained(backbone, num_labels=2), "jitdp"))
    lora = {"lora.layers": "1", "lora.rank": 8} if options.quick else DECODER_LORA
    os.environ["SWEEPER_CACHE"] = str(folder / "decoder-cache")
    rows, base = [], None
    for name, cache in [("off", "off"), ("on, first", "auto"), ("on, again", "auto")]:
        config = TrialConfig().with_overrides({
            "method": "lora", **lora, "cache_frozen": cache, "backbone": backbone, "data.path": common.jitdp_data(),
            "data.sample": options.decoder_sample, "data.max_length": options.max_length, "data.split.valid": 0.25,
            "epochs": options.epochs, "batch_size": 16, "lr": 1e-3, "class_weighting": True, "seed": 0})
        print(f"  decoder: {name} ...", file=sys.stderr, flush=True)
        figures = run_variant(config)
        print(f"    {figures['note']}: {figures['wall']:.1f} s", file=sys.stderr, flush=True)
        base = base or figures
        rows.append(("lora", name, figures["first"], figures["epoch"], base["epoch"] / figures["epoch"],
                     figures["wall"], base["wall"] / figures["wall"], figures["metrics"]["auc"],
                     figures["note"].split(" (")[0]))
    del os.environ["SWEEPER_CACHE"]
    return rows, size


def sweep_spec(options: Any, cache: str, storage: Path) -> dict[str, Any]:
    spec = common.lora_grid_spec("bench-frozen", options.trials, options.sweep_sample, options.epochs,
                                 options.max_length, storage, max_concurrent=1)
    spec["data"]["path"] = common.jitdp_data()
    spec["defaults"].update(cache_frozen=cache, lora={"rank": 8, "layers": "3"})
    return spec


def sweeps(options: Any, folder: Path, backbone: Path) -> list[tuple]:
    """The sweep with the cache off and on, each from an empty cache: wall, compute, best value, cache notes."""
    rows = []
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    for cache in ("off", "auto"):
        cache_folder = empty_cache(folder / f"cache-{cache}", backbone)
        spec = common.write_spec(folder, sweep_spec(options, cache, folder / "ray-results"), f"{cache}.yaml")
        print(f"  sweep, cache {cache} ...", file=sys.stderr, flush=True)
        sweep = common.run_sweep(spec, uri, folder, f"bench-frozen-{cache}",
                                 env={**os.environ, "SWEEPER_CACHE": str(cache_folder)})
        runs = common.trial_runs(uri, sweep.summary["parent_run_id"])
        notes = sorted({run.data.tags.get("sweeper.frozen_cache", "?").split(" (")[0].rsplit(" ", 1)[0]
                        for run in runs})
        rows.append((cache, len(runs), sweep.wall_seconds, sum(run.data.metrics.get("compute_seconds", 0.0)
                                                               for run in runs),
                     float(sweep.summary["best_value"]), "; ".join(notes)))
    return rows


def main() -> None:
    args = common.parser(__doc__.splitlines()[0])
    args.add_argument("--sample", type=int, help="commits per trial (default 1600; 160 with --quick)")
    args.add_argument("--max-length", type=int, help="tokens per commit (default 256; 64 with --quick)")
    args.add_argument("--epochs", type=int, help="epochs per trial (default 3; 2 with --quick)")
    args.add_argument("--trials", type=int, help="trials per sweep (default 4; 2 with --quick)")
    args.add_argument("--sweep-sample", type=int, help="commits per sweep trial (default 800; 120 with --quick)")
    args.add_argument("--decoder-sample", type=int, help="commits per decoder-only trial (default 320; 80 with --quick)")
    args.add_argument("--decoder-only", action="store_true", help="run the decoder-only section alone")
    options = args.parse_args()
    options.decoder_sample = options.decoder_sample or (80 if options.quick else 320)
    options.sample = options.sample or (160 if options.quick else 1600)
    options.max_length = options.max_length or (64 if options.quick else 256)
    options.epochs = options.epochs or (2 if options.quick else 3)
    options.trials = options.trials or (2 if options.quick else 4)
    options.sweep_sample = options.sweep_sample or (120 if options.quick else 800)
    from sweeper.backbone import embedded_backbone_dir

    backbone = embedded_backbone_dir()  # built once and cached: no variant pays for building it
    with tempfile.TemporaryDirectory(prefix="bench-frozen-") as temp:
        folder = Path(temp)
        decoder_rows, decoder_size = decoder_variants(options, folder)
        if options.decoder_only:
            return print_decoder(options, decoder_rows, decoder_size)
        rows, equal = per_trial(options, empty_cache(folder / "cache", backbone))
        sweep_rows = sweeps(options, folder, backbone)

    speedups = [row[4] for row in rows if row[1].startswith("on")]
    common.print_report("Frozen-prefix cache (bench/frozen_cache.py)", {
        "model": "embedded backbone (4 layers, hidden 128), LoRA r8 / adapter bottleneck 32 on layer 3 only",
        "data": f"{common.jitdp_data()}, sample {options.sample}, time split 25 % validation, "
                f"max_length {options.max_length}",
        "training": f"epochs {options.epochs}, batch 16, lr 1e-3, seed 0, 1 thread",
    }, [
        ("Per trial (seconds: training + evaluation; x: off / this)",
         ("method", "variant", "epoch 1 s", "later epochs s", "x", "trial wall s", "wall x", "auc", "cache"), rows),
        ("Cached trials against the same computation uncached (frozen layers in eval mode)",
         ("method", "variant", "max abs diff (auc, f1, mcc, eval_loss)", "equal to 4 digits"), equal),
        (f"A sweep of {options.trials} LoRA trials (grid over lr, {options.sweep_sample} commits, one at a time)",
         ("cache_frozen", "trials", "sweep wall s", "trials' compute s", "best auc", "cache notes"), sweep_rows),
        decoder_table(options, decoder_rows, decoder_size),
        ("Targets", ("figure", "value", "target", "met"), [
            ("later epochs, cache on / off (lowest)", min(speedups), f">= {TARGET_SPEEDUP:g}x (goal 3x)",
             common.verdict(min(speedups), TARGET_SPEEDUP)),
            ("sweep compute, off / on", sweep_rows[0][3] / sweep_rows[1][3], "-", "-"),
            ("decoder-only, later epochs, cache on / off", min(row[4] for row in decoder_rows[1:]), "-", "-"),
        ]),
    ])


def decoder_table(options: Any, rows: list[tuple], size: int) -> tuple[str, tuple[str, ...], list[tuple]]:
    return (f"Decoder-only (Qwen2 shape, {size / 1e6:.0f} M parameters, random weights), LoRA r8 on its top two "
            f"layers, {options.decoder_sample} commits, max_length {options.max_length}, {options.epochs} epochs",
            ("method", "variant", "epoch 1 s", "later epochs s", "x", "trial wall s", "wall x", "auc", "cache"), rows)


def print_decoder(options: Any, rows: list[tuple], size: int) -> None:
    common.print_report("Frozen-prefix cache, decoder-only (bench/frozen_cache.py --decoder-only)", {
        "data": f"{common.jitdp_data()}, time split 25 % validation",
        "training": "batch 16, lr 1e-3, seed 0, 1 thread",
    }, [decoder_table(options, rows, size)])


if __name__ == "__main__":
    main()
