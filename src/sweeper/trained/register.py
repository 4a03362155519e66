"""`sweeper register`: a trial's trained model in the MLflow Model Registry, as a pyfunc model MLflow tools load.

The version holds what `sweeper export` writes without `--merge`: the weights as they trained (LoRA and IA3 as a
PEFT folder, adapters in the `adapters` format plus the head, `full` as the whole model), the backbone's tokenizer
and `sweeper.json`, which says how to load the folder with plain transformers / PEFT and holds the config and
metrics. Not merged, on purpose: the registered model then scores exactly what its run logged (merging LoRA into
the weights changes floating-point sums), a version stores only what trained rather than a copy of the backbone,
and adapters (which cannot be merged) register the same way; `sweeper export --merge` still writes merged weights.
Loading through MLflow needs sweeper installed (its code encodes commits as in training); the backbone is loaded by
name, as the trial did.

Usage::

    version = register_run(tracker, run_id, "jitdp-defects")
    model = mlflow.pyfunc.load_model(f"models:/jitdp-defects/{version.version}")
    model.predict(pandas.DataFrame([{"id": "c1", "message": "Fix NPE", "diff": "...", "date": "2024-05-01T10:00"}]))
"""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timezone
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

import sweeper
from sweeper.errors import SweeperError
from sweeper.tracking.client import Tracker
from sweeper.tracking.schema import BEST_PREFIX, COSTS, REGISTERED_ARTIFACT, State, Tag

LIBRARIES = ("torch", "transformers", "peft", "adapters")  # what loads and runs the weights, pinned as they trained
MODEL_CODE = Path(__file__).with_name("registered_model.py")  # models-from-code: no pickle in the registry
EXAMPLE = pd.DataFrame([{"id": "3f2a9c1", "message": "Refuse withdrawals beyond the balance",
                         "diff": "diff --git a/Account.java b/Account.java\n@@ -4,2 +4,5 @@\n"
                                 "+        if (amount > balance) {\n"
                                 "+            throw new IllegalArgumentException();\n"
                                 "+        }\n         balance -= amount;\n",
                         "date": "2024-11-25T10:15:00+01:00"}])  # the input format, shown with the model


class TrialModel(mlflow.pyfunc.PythonModel):
    """A registered trial: commits in (a DataFrame with `id`, `message`, `diff`, optional `date`, `project`,
    `features`), its task's prediction out (`probability` of a defect, or the generated `message`)."""

    def load_context(self, context: Any) -> None:
        import torch

        from sweeper.artifacts import load_trained_model, read_scaler
        from sweeper.backbone import load_tokenizer
        from sweeper.config import TrialConfig
        from sweeper.tasks import task_for
        from sweeper.trained.export import MANIFEST

        folder = Path(context.artifacts[REGISTERED_ARTIFACT])
        self.config = TrialConfig.model_validate(json.loads((folder / MANIFEST).read_text())["config"])
        self.task = task_for(self.config)
        self.task.scaler = read_scaler(folder)  # the expert features' scaler, with `features: expert`
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = load_trained_model(self.config, folder).to(self.device)
        self.tokenizer = load_tokenizer(self.config.backbone, self.config.task)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """The task's prediction per row. A request the model cannot read (no `features` for a model that needs
        them, a bad field) raises MlflowException: the scoring server answers 400 with its one message, where any
        other exception becomes a generic error with a Python stack trace."""
        from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException

        from sweeper.data.commits import parse_commits

        try:
            if self.config.features == "expert":
                check_features(model_input)
            rows = (model_input if "date" in model_input
                    else model_input.assign(date=datetime.now(timezone.utc).isoformat()))
            records = parse_commits(rows.to_json(orient="records", lines=True, force_ascii=False), "model input")
            outputs = self.task.predict_records(self.model, records, self.tokenizer, self.device)
        except SweeperError as error:
            raise MlflowException(str(error), error_code=INVALID_PARAMETER_VALUE) from None
        column = "message" if self.config.task == "cmg" else "probability"
        return pd.DataFrame({"id": [record.id for record in records], column: outputs})


def check_features(rows: pd.DataFrame) -> None:
    """Every row of a model trained with expert features carries its `features`; else one SweeperError that names
    the field, the first row without it and what it must hold."""
    from sweeper.data.features import FEATURE_NAMES

    column = rows["features"] if "features" in rows else pd.Series([None] * len(rows), index=rows.index)
    missing = [position for position, value in enumerate(column) if not isinstance(value, dict)]
    if missing:
        first = missing[0]
        which = f"row {first + 1}" + (f" (id {rows['id'].iloc[first]})" if "id" in rows else "")
        raise SweeperError(
            f"field 'features' is missing in {len(missing)} of {len(rows)} rows, first {which}: this model was "
            "trained with expert features (features: expert) and needs, in each row, a 'features' object with the "
            f"commit's 14 change metrics as numbers: {', '.join(FEATURE_NAMES)} (`sweeper data from-git` computes "
            "them as the training data had them; `sweeper predict MODEL --repo CLONE REV` computes and scores in one)")


def signature(task: str) -> Any:
    """What the model reads (the commit fields `sweeper predict` reads from JSON Lines; other columns are dropped)
    and writes, so MLflow checks inputs and serving tools know the schema."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, DataType, Schema

    inputs = Schema([ColSpec(DataType.string, "id"), ColSpec(DataType.string, "message"),
                     ColSpec(DataType.string, "diff"), ColSpec(DataType.string, "date", required=False),
                     ColSpec(DataType.string, "project", required=False),
                     ColSpec(AnyType(), "features", required=False)])  # name -> number; sweeper checks them
    output = ColSpec(DataType.string, "message") if task == "cmg" else ColSpec(DataType.double, "probability")
    return ModelSignature(inputs, Schema([ColSpec(DataType.string, "id"), output]))


def requirements() -> list[str]:
    """sweeper (its code reads the weights and encodes commits) and the libraries that trained the weights."""
    return [f"sweeper=={sweeper.__version__}",
            *(f"{name}=={installed_version(name).split('+')[0]}" for name in LIBRARIES)]


def register_run(tracker: Tracker, run_id: str, name: str) -> Any:
    """Register a completed trial's model as a new version of `name` (created if new); returns the ModelVersion, whose
    source run is the trial's run and whose tags and description hold the trial's params and metrics."""
    from mlflow.entities import LoggedModelOutput
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    from sweeper.trained.export import export_run

    run = tracker.trial_run(run_id)
    state = run.data.tags.get(Tag.STATE)
    if state != State.COMPLETE:
        raise SweeperError(f"run {run_id} is {state}, not complete: register a completed trial (see `sweeper best`)")
    client = tracker.client
    params, metrics = own_params(dict(run.data.params)), version_metrics(run.data.metrics)
    logged = client.create_logged_model(run.info.experiment_id, name=name, source_run_id=run_id, params=params,
                                        tags={Tag.SWEEP: run.data.tags.get(Tag.SWEEP, ""),
                                              Tag.METHOD: run.data.tags.get(Tag.METHOD, "")})
    with tempfile.TemporaryDirectory(prefix="sweeper-register-") as folder:
        trial, saved = Path(folder) / REGISTERED_ARTIFACT, Path(folder) / "model"
        export_run(tracker, run_id, trial)
        mlflow.pyfunc.save_model(saved, python_model=str(MODEL_CODE), artifacts={REGISTERED_ARTIFACT: str(trial)},
                                 pip_requirements=requirements(), signature=signature(params.get("task", "jitdp")),
                                 input_example=EXAMPLE,
                                 mlflow_model=Model(artifact_path=logged.artifact_location, run_id=run_id,
                                                    model_id=logged.model_id),
                                 metadata={"sweeper_run_id": run_id, "task": params.get("task", "")})
        client.log_model_artifacts(logged.model_id, str(saved))
    client.finalize_logged_model(logged.model_id, "READY")
    client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])  # the run's "Logged models"
    try:
        client.create_registered_model(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    return client.create_model_version(name, f"models:/{logged.model_id}", run_id=run_id,
                                       tags={**params, **{key: f"{value:.6g}" for key, value in metrics.items()}},
                                       description=version_description(run, metrics), model_id=logged.model_id)


def own_params(params: dict[str, str]) -> dict[str, str]:
    """The trial's params without the sections of methods it did not use (a LoRA trial's `adapter.*` defaults)."""
    from sweeper.methods import METHODS

    def kept(key: str) -> bool:
        section = key.partition(".")[0]
        return section not in METHODS or section == params.get("method")

    return {key: value for key, value in params.items() if kept(key)}


def version_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The trial's best metrics and costs: what the version's tags and description show."""
    return {key: value for key, value in sorted(metrics.items()) if key.startswith(BEST_PREFIX) or key in COSTS}


def version_description(run: Any, metrics: dict[str, float]) -> str:
    """Markdown: what the trial was and how it ended, where it came from, its metrics."""
    tags = run.data.tags
    lines = [tags.get(Tag.NOTE, run.info.run_name or run.info.run_id), "",
             f"Trial run `{run.info.run_id}` of sweep `{tags.get(Tag.SWEEP, '?')}`. Loads with "
             "`mlflow.pyfunc.load_model` where sweeper is installed; `artifacts/trial/sweeper.json` says how to load "
             "the weights with transformers / PEFT alone.", "", "| metric | value |", "|---|---|",
             *(f"| {key} | {value:.6g} |" for key, value in metrics.items())]
    return "\n".join(lines)
