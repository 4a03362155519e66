"""`sweeper export`: a trial's model as a standalone folder, with the backbone's tokenizer and a `sweeper.json`.

- LoRA / IA3: the PEFT adapter folder (load with `AutoPeftModelForSequenceClassification.from_pretrained`),
  or with `merge` the merged full weights (load with `AutoModelForSequenceClassification.from_pretrained`);
- adapter: the `adapters`-format folder and `head.safetensors` (bottleneck layers cannot be merged);
- full: the whole model, as `save_pretrained` wrote it.

A run trained with expert features (`features: expert`) has JIT-Fine's head in place of the standard one: the
folder then loads through sweeper (`load_with_expert_head`, the manifest's `load`), and holds the trial's
`feature_scaler.json`; the manifest's `features` says how to scale a commit's 14 features and hand them to the head.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from sweeper.artifacts import SCALER_FILE, TrialArtifacts, downloaded_trial, trained_model
from sweeper.errors import SweeperError
from sweeper.methods import METHODS
from sweeper.tracking.client import Tracker

MANIFEST = "sweeper.json"
HOW_TO_LOAD = {  # by the method's export format, or `merged`
    "merged": "AutoModelForSequenceClassification.from_pretrained(DIR)",
    "full": "AutoModelForSequenceClassification.from_pretrained(DIR)",
    "peft": "peft.AutoPeftModelForSequenceClassification.from_pretrained(DIR)",
    "adapters": ("model = AutoModelForSequenceClassification.from_pretrained(BACKBONE, num_labels=2); "
                "adapters.init(model); model.load_adapter(DIR, set_active=True); "
                "model.load_state_dict(safetensors.torch.load_file(DIR/'head.safetensors'), strict=False)"),
    "expert": ("from sweeper.tasks.expert_head import load_with_expert_head; model = load_with_expert_head("
               "AutoModelForSequenceClassification.from_pretrained(BACKBONE, num_labels=2), "
               "sweeper.config.TrialConfig(method='METHOD'), DIR)"),
}
FEATURES_USE = ("x = (sign(f) * log(1 + |f|) - mean) / scale for the commit's features f in the order of `names`, "
                "with mean and scale from feature_scaler.json (sweeper.data.features.FeatureScaler.from_json(text)"
                ".transform(f)); then `with sweeper.tasks.expert_head.expert_features(model, torch.tensor(x, "
                "dtype=torch.float32)): logits = model(input_ids=..., attention_mask=...).logits`")

# Message generation on an encoder-only backbone: the encoder and its new decoder (`sweeper.backbone.new_decoder`)
# save as an `EncoderDecoderModel`; PEFT and adapters files go on top of the one sweeper builds.
NEW_DECODER_LOAD = {
    "merged": "AutoModelForSeq2SeqLM.from_pretrained(DIR)",
    "full": "AutoModelForSeq2SeqLM.from_pretrained(DIR)",
    "peft": "model = peft.PeftModel.from_pretrained(sweeper.backbone.load_generator(BACKBONE, LAYERS), DIR)",
    "adapters": ("model = sweeper.backbone.load_generator(BACKBONE, LAYERS); adapters.init(model.encoder); "
                 "model.encoder.load_adapter(DIR, set_active=True); "
                 "model.load_state_dict(safetensors.torch.load_file(DIR/'head.safetensors'), strict=False)"),
}


def export_run(tracker: Tracker, run_id: str, out: Path, merge: bool = False) -> Path:
    """Write the run's model to `out` (which must be empty or absent); returns the manifest's path."""
    if out.exists() and any(out.iterdir()):
        raise SweeperError(f"{out} is not empty: export into a new folder")
    with downloaded_trial(tracker, run_id) as trial:
        method = METHODS[trial.config.method]
        if merge and not method.mergeable and method.export_format != "full":
            raise SweeperError(f"--merge is not supported for {method.name}: its layers cannot be folded into the "
                               "backbone's weights; export without --merge")
        out.mkdir(parents=True, exist_ok=True)
        if merge and method.mergeable:
            trained_model(trial).merge_and_unload().save_pretrained(out)
            kind = "merged"
        else:  # what trained, as the run logged it (a full model is already "merged")
            shutil.copytree(trial.model_dir, out, dirs_exist_ok=True)
            kind = method.name
        save_tokenizer(trial, out)
        if trial.scaler is not None:
            (out / SCALER_FILE).write_text(trial.scaler.to_json())
        return write_manifest(trial, out, kind)


def save_tokenizer(trial: TrialArtifacts, out: Path) -> None:
    """The backbone's tokenizer beside the weights, so the folder encodes its own inputs."""
    from sweeper.backbone import load_tokenizer

    load_tokenizer(trial.config.backbone, trial.config.task).save_pretrained(out)


def how_to_load(trial: TrialArtifacts, kind: str) -> str:
    """HOW_TO_LOAD for an export of `kind` (a method's name or `merged`) and the run's task: a generator's Auto
    class in place of the classifier's (NEW_DECODER_LOAD for an encoder-only backbone)."""
    if trial.config.features == "expert":  # the standard head class cannot hold the expert-feature head's weights
        return HOW_TO_LOAD["expert"].replace("METHOD", "full" if kind == "merged" else kind)
    fmt = kind if kind == "merged" else METHODS[kind].export_format
    text = HOW_TO_LOAD[fmt]
    if trial.config.task != "cmg":
        return text
    from transformers import AutoConfig

    from sweeper.backbone import resolve_backbone
    from sweeper.backbone.new_decoder import encoder_only

    config = AutoConfig.from_pretrained(resolve_backbone(trial.config.backbone, "cmg"))
    if encoder_only(config):
        return NEW_DECODER_LOAD[fmt].replace("LAYERS", str(trial.config.generation.decoder_layers))
    auto = "AutoModelForSeq2SeqLM" if config.is_encoder_decoder else "AutoModelForCausalLM"
    return text.replace("AutoModelForSequenceClassification", auto).replace(", num_labels=2", "")


def task_notes(trial: TrialArtifacts) -> dict[str, Any]:
    """What the model reads and what it gives, per task."""
    data = trial.config.data
    if trial.config.task == "cmg":
        return {"input": f"[ADD] added lines [DEL] removed lines, max {data.max_length} tokens; see sweeper.data.encoding",
                "output": f"the commit message ({data.message}, max {data.message_tokens} tokens), by generate()"}
    notes: dict[str, Any] = {
        "input": (f"message [ADD] added lines [DEL] removed lines, max {data.max_length} tokens "
                  f"(message {data.message_tokens}); see sweeper.data.encoding"),
        "label": "class 1 = defect-inducing; probability = softmax(logits)[1]"}
    if trial.scaler is not None:
        notes["features"] = {"names": list(trial.scaler.names), "scaler": SCALER_FILE, "use": FEATURES_USE}
    return notes


def write_manifest(trial: TrialArtifacts, out: Path, kind: str) -> Path:
    """`sweeper.json`: where the model came from, how to load it, its config and metrics."""
    from sweeper.backbone import resolve_backbone

    manifest = {
        "run_id": trial.run_id,
        "method": trial.config.method,
        "format": kind,
        "backbone": trial.config.backbone,
        "backbone_path": resolve_backbone(trial.config.backbone, trial.config.task),
        "load": how_to_load(trial, kind),
        **task_notes(trial),
        "config": trial.config.model_dump(mode="json"),
        "metrics": {key: value for key, value in sorted(trial.metrics.items())},
    }
    path = out / MANIFEST
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return path
