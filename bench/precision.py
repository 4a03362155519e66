"""Precision and memory settings: fp32 against bf16 (and fp16 on a GPU), with and without gradient checkpointing and
gradient accumulation: training samples/s, peak memory and the metric, side by side in one run.

On a GPU (`torch.cuda.is_available()`): a randomly initialised RoBERTa of CodeBERT's shape (12 layers, hidden 768,
the toy tokenizer; no download, as `bench/gpu.py` builds it) for JIT-DP, full fine-tuning and LoRA at each precision, plus gradient
checkpointing and accumulation at bf16 and fp32; the figure that matters is the samples/s ratio bf16 / fp32 of
full fine-tuning (fp32 there already uses TF32 matrix products) and the memory saved. Its metrics mean nothing
(random weights). On a CPU: the embedded toy backbone, every method at fp32 and bf16, each with neither, gradient
checkpointing, accumulation (4 micro-batches) and both: every combination must run, and its evaluation loss stay
close to fp32's (the toy learns too little in a short trial for AUC to say more).

Each trial runs in a process of its own, so that its peak memory is its own (a GPU's max allocated, reset per trial;
on a CPU the process's peak resident set, which includes about 0.6 GB of Python, PyTorch and the libraries).

The report's head names the CPU's bf16 flags (`amx_bf16`, `avx512_bf16`) and what `precision: auto` picks here;
its targets give this machine's samples/s ratio bf16 / fp32 (LoRA, plain), the ratio `auto` gains where it picks bf16.

    python bench/precision.py            # GPU: about 5 minutes on one H200; CPU: about 20 minutes on 2 cores
    python bench/precision.py --quick    # tiny: checks the script runs (GPU: the toy only)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import common

TARGET_GPU_RATIO = 1.7  # bf16 / fp32 samples/s of full fine-tuning, CodeBERT-size, on a GPU
TARGET_CLOSE = 0.03  # relative difference of the evaluation loss, bf16 against fp32, on a CPU
MEMORY = {"plain": {}, "checkpointing": {"gradient_checkpointing": True}, "accum 4": {"grad_accum": 4},
          "checkpointing + accum 4": {"gradient_checkpointing": True, "grad_accum": 4}}
LEARNING_RATES = {"full": 2e-5, "adapter": 1e-4, "lora": 1e-4, "ia3": 1e-3}


def codebert_sized(folder: Path) -> str:
    """A randomly initialised RoBERTa of CodeBERT's shape with the toy tokenizer, saved in `folder` (as `gpu.py`
    builds it, without the T5 this benchmark does not need)."""
    import torch
    from transformers import RobertaConfig, RobertaForMaskedLM

    from sweeper.backbone import load_tokenizer

    tokenizer = load_tokenizer("embedded")
    torch.manual_seed(0)
    RobertaForMaskedLM(RobertaConfig(vocab_size=len(tokenizer), max_position_embeddings=514,
                                     pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                                     eos_token_id=tokenizer.eos_token_id, type_vocab_size=1)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def one(overrides: dict[str, Any]) -> dict[str, Any]:
    """Run one trial in this process: its costs and metrics."""
    from sweeper.config import TrialConfig
    from sweeper.trial import run_trial

    result = run_trial(TrialConfig().with_overrides(overrides))
    return {"samples/s": result.costs["samples_per_second"], "peak MB": result.costs["peak_memory_mb"],
            "micro": result.costs["micro_batch_size"], "train s": result.costs["train_seconds"],
            "auc": result.metrics["auc"], "eval_loss": result.metrics["eval_loss"]}


def isolated(overrides: dict[str, Any]) -> dict[str, Any]:
    """`one(overrides)` in a fresh Python process; its error's last line if it failed."""
    script = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import precision; "
              "print('RESULT ' + json.dumps(precision.one(json.loads(sys.argv[1]))))")
    done = subprocess.run([sys.executable, "-c", script, json.dumps(overrides)], capture_output=True, text=True)
    results = [line.removeprefix("RESULT ") for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not results:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        return {"error": lines[-1] if lines else f"exit {done.returncode}"}
    return json.loads(results[0])


def cases(on_gpu: bool, quick: bool) -> list[tuple[str, str, str]]:
    """(method, precision, memory variant) to run."""
    if on_gpu and not quick:
        plain = [(method, precision, "plain") for method in ("full", "lora") for precision in ("fp32", "bf16", "fp16")]
        return plain + [("full", precision, variant) for precision in ("fp32", "bf16")
                        for variant in MEMORY if variant != "plain"]
    methods = ("lora",) if quick else ("full", "adapter", "lora", "ia3")
    precisions = ("fp32", "bf16", "fp16") if on_gpu else ("fp32", "bf16")
    return [(method, precision, variant) for method in methods for precision in precisions for variant in MEMORY]


def main() -> None:
    options = common.parser(__doc__.splitlines()[0]).parse_args()
    import torch

    from sweeper.backbone import embedded_backbone_dir
    from sweeper.precision import CPU_BF16_FLAGS, cpu_flags, resolve_precision

    embedded_backbone_dir()  # built once and cached before anything is timed
    on_gpu = torch.cuda.is_available()
    sample, max_length, epochs = (120, 64, 1) if options.quick else ((800, 256, 1) if on_gpu else (400, 128, 2))
    with tempfile.TemporaryDirectory(prefix="bench-precision-") as temp:
        backbone = "embedded"
        if on_gpu and not options.quick:
            backbone = codebert_sized(Path(temp) / "roberta-codebert-size")
        rows: dict[tuple[str, str, str], dict[str, Any]] = {}
        for method, precision, variant in cases(on_gpu, options.quick):
            print(f"  {method} {precision} {variant} ...", file=sys.stderr, flush=True)
            rows[method, precision, variant] = isolated({
                "method": method, "precision": precision, **MEMORY[variant], "backbone": backbone,
                "data.path": "bundled:jitdp", "data.sample": sample, "data.max_length": max_length, "epochs": epochs,
                "batch_size": 16, "lr": LEARNING_RATES[method], "class_weighting": True, "seed": 0})

    table, failures, closeness, ratios, machine_ratio = [], [], [], [], float("nan")
    for (method, precision, variant), figures in rows.items():
        if "error" in figures:
            failures.append((method, precision, variant, figures["error"][:200]))
            continue
        base = rows.get((method, "fp32", variant), {})
        speed = figures["samples/s"] / base["samples/s"] if "samples/s" in base else float("nan")
        memory = figures["peak MB"] / base["peak MB"] if "peak MB" in base else float("nan")
        change = abs(figures["eval_loss"] - base["eval_loss"]) / base["eval_loss"] if "eval_loss" in base else 0.0
        table.append((method, precision, variant, figures["micro"], figures["samples/s"], speed, figures["peak MB"],
                      memory, figures["auc"], figures["eval_loss"], change))
        if precision != "fp32":
            closeness.append(change)
        if on_gpu and method == "full" and variant == "plain" and precision == "bf16":
            ratios.append(speed)
        if method == "lora" and variant == "plain" and precision == "bf16":
            machine_ratio = speed
    targets = [("combinations that ran", f"{len(table)} of {len(rows)}", "all", common.verdict(len(table), len(rows))),
               ("samples/s bf16 / fp32 on this machine, LoRA, plain", machine_ratio, "-", "-")]
    if closeness:
        targets.append(("largest eval_loss change against fp32 (relative)", max(closeness), f"<= {TARGET_CLOSE:g}",
                        common.verdict(max(closeness), TARGET_CLOSE, at_least=False)))
    if ratios:
        targets.append(("samples/s bf16 / fp32, full fine-tuning, CodeBERT-size", ratios[0],
                        f">= {TARGET_GPU_RATIO:g}x", common.verdict(ratios[0], TARGET_GPU_RATIO)))
    common.print_report("Precision and memory (bench/precision.py)", {
        "device": "GPU (fp32 with TF32 matrix products)" if on_gpu else "CPU, 1 thread per trial",
        "CPU bf16 flags": " ".join(sorted(cpu_flags() & set(CPU_BF16_FLAGS))) or "none",
        "precision: auto picks": resolve_precision("auto", torch.device("cuda" if on_gpu else "cpu")),
        "backbone": "CodeBERT-shaped RoBERTa, random weights" if backbone != "embedded" else "embedded toy RoBERTa",
        "data": f"bundled:jitdp, sample {sample}, max_length {max_length}, epochs {epochs}, batch 16, seed 0",
        "peak memory": "GPU max allocated per trial" if on_gpu else "peak RSS of the trial's own process",
    }, [
        ("Per trial (x: against fp32 with the same method and memory settings)",
         ("method", "precision", "memory", "micro-batch", "samples/s", "x", "peak MB", "memory x", "auc", "eval_loss",
          "eval_loss change"), table),
        ("Failures", ("method", "precision", "memory", "error"), failures or [("-", "-", "-", "none")]),
        ("Targets", ("figure", "value", "target", "met"), targets),
    ])


if __name__ == "__main__":
    main()
