"""Training throughput: our batching (each batch padded to its own longest input, inputs bucketed by length)
against the study's recipe (every input padded to 512 tokens), same model, data, epochs and seed.

Both encode commits the same way (`message [ADD] added [DEL] removed`, cut at `max_length` 512 tokens);
only the padding differs (`data.pad_to: 512` gives the study's recipe, unbucketed). A third row shows our
default `max_length` (256). The data is a sample of ../shared/data/jitdp/jit-defects4j-a.jsonl.gz when
that file exists, else the bundled JIT-Defects4J sample.

    python bench/throughput.py                 # LoRA, 480 commits, 1 epoch, 1 thread: about 4 minutes
    python bench/throughput.py --method full
    python bench/throughput.py --quick         # tiny: checks the script runs
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

import common

STUDY_LENGTH = 512
TARGET_RATIO = 2.0
LEARNING_RATES = {"lora": 1e-3, "adapter": 1e-3, "ia3": 3e-3, "full": 1e-4}


@dataclass(frozen=True)
class Variant:
    name: str
    max_length: int
    pad_to: int | None


@dataclass(frozen=True)
class Outcome:
    variant: Variant
    samples_per_second: float
    train_seconds: float
    eval_seconds: float
    wall_seconds: float
    auc: float
    padding_share: float  # share of the training tokens that are padding


def padding_share(config: Any, dataset: Any) -> float:
    """Padding tokens / all tokens fed to the model in one training epoch."""
    from sweeper.data.batching import batch_indices
    from sweeper.recipe import prepare_data

    items = prepare_data(config, dataset).train
    real = padded = 0
    for batch in batch_indices(items, config.batch_size, seed=config.seed, pad_to=config.data.pad_to):
        lengths = [len(items[index].input_ids) for index in batch]
        real += sum(lengths)
        padded += len(batch) * (config.data.pad_to or max(lengths))
    return 1 - real / padded


def measure(variant: Variant, base: Any, dataset: Any) -> Outcome:
    from sweeper.trial import run_trial

    config = base.with_overrides({"data.max_length": variant.max_length, "data.pad_to": variant.pad_to})
    print(f"  {variant.name} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    result = run_trial(config, dataset=dataset)
    wall = time.perf_counter() - started
    return Outcome(variant, result.costs["samples_per_second"], result.costs["train_seconds"],
                   result.costs["eval_seconds"], wall, result.metrics["auc"], padding_share(config, dataset))


def main() -> None:
    args = common.parser(__doc__.splitlines()[0])
    args.add_argument("--method", choices=sorted(LEARNING_RATES), default="lora")
    args.add_argument("--sample", type=int, help="commits to sample (default 480; 48 with --quick)")
    args.add_argument("--epochs", type=int, help="epochs (default 1)")
    args.add_argument("--threads", type=int, default=1,
                      help="torch threads (default 1, as trials have; 2 ran slower than 1 on a 2-core VM)")
    options = args.parse_args()
    sample = options.sample or (48 if options.quick else 480)
    epochs = options.epochs or 1

    from sweeper.backbone import embedded_backbone_dir
    from sweeper.config import TrialConfig
    from sweeper.data.records import read_records

    embedded_backbone_dir()
    path = common.jitdp_data()
    dataset = read_records(path, "jitdp")
    base = TrialConfig().with_overrides({
        "method": options.method, "lr": LEARNING_RATES[options.method], "epochs": epochs, "batch_size": 16,
        "eval_batch_size": 64, "class_weighting": True, "seed": 0, "threads": options.threads,
        "data.path": path, "data.sample": sample, "data.split.kind": "time", "data.split.valid": 0.25})
    variants = [Variant(f"study: every input padded to {STUDY_LENGTH}", STUDY_LENGTH, STUDY_LENGTH),
                Variant("ours: per-batch padding, length buckets", STUDY_LENGTH, None),
                Variant("ours, default max_length 256", 256, None)]
    study, ours, short = (measure(variant, base, dataset) for variant in variants)
    ratio = ours.samples_per_second / study.samples_per_second

    common.print_report("Training throughput (bench/throughput.py)", {
        "model": f"embedded backbone, method {options.method}, lr {LEARNING_RATES[options.method]:g}",
        "data": f"{path} ({len(dataset.records)} commits), sample {sample}, time split, 25% validation",
        "training": f"epochs {epochs}, batch 16, seed 0, {options.threads} torch threads",
    }, [
        ("Per variant (samples/s: training samples per second of training time)",
         ("variant", "max_length", "padding share", "samples/s", "train s", "eval s", "wall s", "auc"),
         [(o.variant.name, o.variant.max_length, f"{100 * o.padding_share:.1f} %", o.samples_per_second,
           o.train_seconds, o.eval_seconds, o.wall_seconds, o.auc) for o in (study, ours, short)]),
        ("Ours against the study's recipe (same max_length 512)", ("figure", "value", "target", "met"), [
            ("throughput ratio (ours / study)", ratio, f">= {TARGET_RATIO:g}x", common.verdict(ratio, TARGET_RATIO)),
            ("auc, ours - study", ours.auc - study.auc, "-", "-"),
            ("throughput ratio, ours at max_length 256 / study", short.samples_per_second / study.samples_per_second,
             "-", "-"),
        ]),
    ])


if __name__ == "__main__":
    main()
