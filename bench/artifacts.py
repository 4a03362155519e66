"""Artifact size: the bytes a trial logs for LoRA, bottleneck adapters and IA3 against full fine-tuning.

One short trial per method through `run_trial(config, output_dir)`, which writes what a sweep logs to
MLflow: `model/` (only what was trained: PEFT or `adapters` files plus the classification head, or the
whole model for `full`), the resolved config, the metrics and the validation predictions. Sizes do not
depend on the data or the epochs, only on the backbone and the method's settings.

    python bench/artifacts.py           # the embedded toy backbone: well under a minute
    python bench/artifacts.py --backbone microsoft/codebert-base   # a real model (downloaded or cached)
    python bench/artifacts.py --quick   # the same, smaller data: checks the script runs
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import common

TARGET_SHARE = 5.0  # % of full fine-tuning's artifacts
# Each method with the package's default settings (LoRA rank 8 on query and value; Houlsby adapters with
# reduction factor 16; IA3 on key, value and ffn_out): artifact sizes grow with rank and bottleneck.
METHODS = {"full": {"lr": 1e-4}, "lora": {"lr": 1e-3}, "adapter": {"lr": 1e-3}, "ia3": {"lr": 3e-3}}


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def main() -> None:
    args = common.parser(__doc__.splitlines()[0])
    args.add_argument("--backbone", default="embedded", help="hub name or local folder (default: the embedded toy)")
    options = args.parse_args()
    sample, max_length = (60, 64) if options.quick else (200, 128)

    from sweeper.config import TrialConfig
    from sweeper.trial import run_trial

    sizes: dict[str, tuple[int, int, float]] = {}  # method: (model/ bytes, output dir bytes, trainable params)
    with tempfile.TemporaryDirectory(prefix="bench-artifacts-") as temp:
        for method, settings in METHODS.items():
            print(f"  {method} ...", file=sys.stderr, flush=True)
            config = TrialConfig().with_overrides({
                "method": method, "backbone": options.backbone, "epochs": 1, "batch_size": 16, "seed": 0,
                "data.path": "bundled:jitdp", "data.sample": sample, "data.max_length": max_length, **settings})
            output = Path(temp) / method
            result = run_trial(config, output)
            sizes[method] = (folder_bytes(output / "model"), folder_bytes(output), result.costs["trainable_params"])

    full_model, full_all, _ = sizes["full"]
    rows, checks = [], []
    for method, (model, everything, trainable) in sizes.items():
        rows.append((method, int(trainable), model, everything, f"{100 * model / full_model:.2f} %",
                     f"{100 * everything / full_all:.2f} %"))
        if method in ("lora", "adapter"):
            for what, share in (("model/", 100 * model / full_model), ("all logged", 100 * everything / full_all)):
                checks.append((f"{method}: {what} bytes, % of full", share, f"< {TARGET_SHARE:g} %",
                               common.verdict(share, TARGET_SHARE, at_least=False)))
    common.print_report("Artifact size per trial (bench/artifacts.py)", {
        "backbone": options.backbone,
        "methods": "the package defaults: lora rank 8 on query, value; adapter houlsby, reduction factor 16; "
                   "ia3 on key, value, ffn_out",
        "trial": f"bundled:jitdp, sample {sample}, max_length {max_length}, 1 epoch",
    }, [
        ("Bytes per trial (model/: the trained weights; all: everything the trial logs)",
         ("method", "trainable params", "model/ bytes", "all bytes", "model/ % of full", "all % of full"), rows),
        ("Targets", ("figure", "value", "target", "met"), checks),
    ])


if __name__ == "__main__":
    main()
