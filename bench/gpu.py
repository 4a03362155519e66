"""GPU path: each method of each task trains on CUDA, with its peak GPU memory and throughput; results repeat;
two trials share one GPU at once, as `sweep.resources.gpu: 0.5` has Ray place them.

Besides the embedded toys, it builds two randomly initialised backbones of the study's sizes in a temporary
folder (no download): a RoBERTa of CodeBERT's shape (12 layers, hidden 768; the toy tokenizer's 8k vocabulary)
for defect prediction and a T5 of CodeT5-base's shape (12 + 12 layers, d_model 768) for message generation.
Their metrics mean nothing (random weights); memory and speed are the point.

    python bench/gpu.py            # a few minutes on one GPU
    python bench/gpu.py --quick    # the toys only
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common

METHODS = ("full", "adapter", "lora")
LEARNING_RATES = {"full": 2e-5, "adapter": 1e-4, "lora": 1e-4}
TASKS = {
    "jitdp": {"data.path": "bundled:jitdp", "data.sample": 800, "data.max_length": 256, "metric": "auc", "mode": "max",
              "class_weighting": True},
    "cmg": {"task": "cmg", "data.path": "bundled:cmg", "data.sample": 800, "data.max_length": 256,
            "data.message_tokens": 32, "metric": "eval_loss", "mode": "min", "generation.max_new_tokens": 32,
            "generation.num_beams": 4},
}
COMMON = {"epochs": 1, "batch_size": 16, "eval_batch_size": 64, "adapter.bottleneck": 64, "lora.rank": 16,
          "lora.alpha": 32}


def study_sized_backbones(folder: Path) -> dict[str, str]:
    """A CodeBERT-shaped RoBERTa and a CodeT5-base-shaped T5, randomly initialised, with the toy tokenizer."""
    import torch
    from transformers import RobertaConfig, RobertaForMaskedLM, T5Config, T5ForConditionalGeneration

    from sweeper.backbone import load_tokenizer

    tokenizer = load_tokenizer("embedded")
    torch.manual_seed(0)
    roberta = RobertaForMaskedLM(RobertaConfig(vocab_size=len(tokenizer), max_position_embeddings=514,
                                               pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                                               eos_token_id=tokenizer.eos_token_id, type_vocab_size=1))
    t5 = T5ForConditionalGeneration(T5Config(vocab_size=len(tokenizer), d_model=768, d_kv=64, d_ff=3072, num_layers=12,
                                             num_heads=12, pad_token_id=tokenizer.pad_token_id,
                                             eos_token_id=tokenizer.eos_token_id,
                                             decoder_start_token_id=tokenizer.pad_token_id))
    paths = {}
    for name, model in (("roberta-codebert-size", roberta), ("t5-codet5-base-size", t5)):
        model.save_pretrained(folder / name)
        tokenizer.save_pretrained(folder / name)
        paths[name] = str(folder / name)
    return {"jitdp": paths["roberta-codebert-size"], "cmg": paths["t5-codet5-base-size"]}


def one_trial(task: str, method: str, backbone: str) -> dict[str, Any]:
    """Run one trial here; its device, metrics and costs."""
    import torch

    from sweeper.config import TrialConfig
    from sweeper.trial import run_trial

    config = TrialConfig().with_overrides({**TASKS[task], **COMMON, "method": method, "lr": LEARNING_RATES[method],
                                           "backbone": backbone})
    started = time.perf_counter()
    result = run_trial(config)
    metric = "auc" if task == "jitdp" else "bleu"
    return {"task": task, "method": method, "backbone": Path(backbone).name,
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "trainable %": result.costs["trainable_percent"], "params M": result.costs["total_params"] / 1e6,
            "peak GPU MB": result.costs["peak_memory_mb"], "samples/s": result.costs["samples_per_second"],
            "train s": result.costs["train_seconds"], "eval s": result.costs["eval_seconds"],
            "wall s": time.perf_counter() - started, metric: result.metrics[metric], "metrics": result.metrics}


def shared_gpu(task: str, backbone: str) -> list[Any]:
    """Two trials started together in two processes on the same GPU, as Ray runs two trials of `gpu: 0.5`."""
    script = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import gpu; "
              f"print('RESULT ' + json.dumps(gpu.one_trial({task!r}, 'lora', {backbone!r})))")
    started = time.perf_counter()
    processes = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [process.communicate()[0] for process in processes]
    wall = time.perf_counter() - started
    results = [json.loads(line.removeprefix("RESULT ")) for out in outputs for line in out.splitlines()
               if line.startswith("RESULT ")]
    return [wall, *[(result["peak GPU MB"], result["samples/s"]) for result in results]]


def main() -> None:
    options = common.parser(__doc__.splitlines()[0]).parse_args()
    import torch

    from sweeper.backbone import embedded_backbone_dir, embedded_seq2seq_dir

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible: this benchmark checks the GPU path")
    embedded_backbone_dir(), embedded_seq2seq_dir()
    rows, failures = [], []
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as temp:
        backbones = {"toy": {"jitdp": "embedded", "cmg": "embedded"}}
        if not options.quick:
            backbones["study-sized"] = study_sized_backbones(Path(temp))
        for size, per_task in backbones.items():
            for task in TASKS:
                for method in METHODS:
                    print(f"  {size} {task} {method} ...", file=sys.stderr, flush=True)
                    try:
                        rows.append(one_trial(task, method, per_task[task]))
                    except Exception as error:  # noqa: BLE001 - report every case, keep going
                        failures.append((size, task, method, f"{type(error).__name__}: {error}"[:300]))
        repeat = one_trial("jitdp", "lora", "embedded")["metrics"] == one_trial("jitdp", "lora", "embedded")["metrics"]
        sharing = shared_gpu("cmg", backbones.get("study-sized", backbones["toy"])["cmg"])
        alone = one_trial("cmg", "lora", backbones.get("study-sized", backbones["toy"])["cmg"])
    columns = ["task", "method", "backbone", "device", "params M", "trainable %", "peak GPU MB", "samples/s", "train s",
               "eval s", "wall s"]
    common.print_report("GPU path", {"settings": json.dumps(COMMON), "tasks": json.dumps(TASKS)}, [
        ("Each method on CUDA (1 epoch)", columns + ["auc", "bleu"],
         [[row.get(name, "-") for name in columns + ["auc", "bleu"]] for row in rows]),
        ("Failures", ["size", "task", "method", "error"], failures or [["-", "-", "-", "none"]]),
        ("Repeatability", ["check", "result"], [["same LoRA trial twice on the GPU: identical metrics", repeat]]),
        ("Two LoRA cmg trials sharing the GPU", ["mode", "wall s", "peak GPU MB", "samples/s"],
         [["alone", alone["wall s"], alone["peak GPU MB"], alone["samples/s"]],
          ["two at once: wall for both", sharing[0], "-", "-"],
          *[[f"two at once: trial {index}", "-", peak, speed] for index, (peak, speed) in enumerate(sharing[1:], 1)]]),
    ])


if __name__ == "__main__":
    main()
