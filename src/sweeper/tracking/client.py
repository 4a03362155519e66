"""Everything MLflow: one experiment per spec, a parent run per sweep, a child run per trial.

Ray's MLflow callback makes flat runs, forgets its run map on restore and leaves runs RUNNING;
this module owns the logic instead. Only the driver writes to MLflow. Secrets never become
params or tags: only the trial config (which holds no credentials) and a fixed set of tags are logged.

    >>> tracker = Tracker.connect("sqlite:///:memory:")
    >>> parent = tracker.start_sweep("smoke", "smoke-20261125-101500", spec_text="name: smoke")
    >>> tracker.sweep_runs("smoke")[0].data.tags["sweeper.sweep"]
    'smoke-20261125-101500'
"""

from __future__ import annotations

import functools
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import DatasetInput, Metric, Param, RunTag, ViewType

import sweeper
from sweeper.errors import SweeperError
from sweeper.tracking.auth import http_status
from sweeper.tracking.schema import SPEC_FILE, SWEEP_VIEW_PREFIX, TRAINING_KIND, VIEW_PREFIX, Role, State, Tag
from sweeper.tracking.views import sweep_view_id, sweep_view_state, view_envelope, views_to_drop

DEFAULT_URI_FILE = "mlflow.db"
PARAMS_PER_BATCH = 100


def resolve_uri(uri: str | None) -> str:
    """The tracking URI: the one given, else $MLFLOW_TRACKING_URI, else a SQLite store in the working directory."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path.cwd() / DEFAULT_URI_FILE}"


@dataclass
class Tracker:
    """A thin, explicit layer over MlflowClient for sweeps and trials."""

    client: MlflowClient
    uri: str

    @classmethod
    def connect(cls, uri: str | None) -> "Tracker":
        resolved = resolve_uri(uri)
        return cls(MlflowClient(tracking_uri=resolved), resolved)

    def experiment_id(self, name: str) -> str:
        """The experiment for a spec name, created on first use, with the kind that says it holds training runs
        (unless someone chose another kind): UIs that pick the page from it open the runs table, not GenAI's."""
        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            return self.client.create_experiment(name, tags={Tag.EXPERIMENT_KIND: TRAINING_KIND})
        if not experiment.tags.get(Tag.EXPERIMENT_KIND):
            self.client.set_experiment_tag(experiment.experiment_id, Tag.EXPERIMENT_KIND, TRAINING_KIND)
        return experiment.experiment_id

    def start_sweep(self, experiment: str, sweep_id: str, spec_text: str, tags: dict[str, str] | None = None,
                    searched: list[str] | None = None) -> str:
        """Create the parent run of a sweep, with the spec as an artifact, and the sweep's view of the runs table
        (its runs ranked by the `sweeper.metric` tag, `searched` params as columns); returns its run id."""
        tags = {Tag.SWEEP: sweep_id, Tag.ROLE: Role.SWEEP, **base_tags(), **(tags or {})}
        experiment_id = self.experiment_id(experiment)
        run = self.client.create_run(experiment_id, run_name=sweep_id, tags=tags)
        self.client.log_text(run.info.run_id, spec_text, SPEC_FILE)
        state = sweep_view_state(sweep_id, tags.get(Tag.METRIC, "auc"), tags.get(Tag.MODE, "max"), searched or [])
        self.save_view(experiment_id, sweep_view_id(sweep_id), f"sweep {sweep_id}", state)
        return run.info.run_id

    def save_view(self, experiment_id: str, view_id: str, name: str, state: dict[str, Any]) -> None:
        """Save a view of the experiment's runs table (listed under "Views" in the UI); of sweeper's own views only
        the newest are kept."""
        self.client.set_experiment_tag(experiment_id, VIEW_PREFIX + view_id,
                                       view_envelope(name, state, int(time.time() * 1000)))
        tags = self.client.get_experiment(experiment_id).tags
        for key in views_to_drop(tags, VIEW_PREFIX + SWEEP_VIEW_PREFIX):
            self.client.delete_experiment_tag(experiment_id, key)

    def start_trial(self, experiment: str, parent_run_id: str, sweep_id: str, name: str,
                    params: dict[str, Any], tags: dict[str, str], start_time: int | None = None) -> str:
        """Create a child run under the sweep with the resolved config as params (`start_time` in ms, default now)."""
        run = self.client.create_run(self.experiment_id(experiment), run_name=name, start_time=start_time, tags={
            Tag.PARENT_RUN: parent_run_id, Tag.SWEEP: sweep_id, Tag.ROLE: Role.TRIAL, Tag.STATE: State.RUNNING,
            **base_tags(), **tags})
        items = [Param(key, str(value)) for key, value in params.items()]
        for start in range(0, len(items), PARAMS_PER_BATCH):
            self.client.log_batch(run.info.run_id, params=items[start:start + PARAMS_PER_BATCH])
        return run.info.run_id

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0, tags: dict[str, str] | None = None,
                    timestamp: int | None = None) -> None:
        """Numeric metrics at one step (non-numbers are skipped), and any `tags`, in one request; `timestamp` in ms
        (default now)."""
        now = int(time.time() * 1000) if timestamp is None else timestamp
        items = [Metric(key, float(value), now, step) for key, value in metrics.items()
                 if isinstance(value, (int, float)) and not isinstance(value, bool)]
        run_tags = [RunTag(key, str(value)) for key, value in (tags or {}).items()]
        if items or run_tags:
            self.client.log_batch(run_id, metrics=items, tags=run_tags)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        """Set several tags at once."""
        self.client.log_batch(run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()])

    def log_artifacts(self, run_id: str, folder: Path, artifact_path: str | None = None) -> None:
        """Upload a folder's files."""
        self.client.log_artifacts(run_id, str(folder), artifact_path)

    def log_file(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        """Upload one file."""
        self.client.log_artifact(run_id, str(path), artifact_path)

    def end_run(self, run_id: str, state: str, note: str | None = None) -> None:
        """End a run: state complete/pruned -> FINISHED, failed -> FAILED, killed -> KILLED; `note` (Markdown) becomes
        its description in the UI."""
        self.set_tags(run_id, {Tag.STATE: state, **({Tag.NOTE: note} if note else {})})
        self.client.set_terminated(run_id, State.MLFLOW_STATUS[state])

    def set_note(self, run_id: str, note: str) -> None:
        """A run's description in the UI (Markdown)."""
        self.set_tags(run_id, {Tag.NOTE: note})

    def log_datasets(self, run_id: str, datasets: list[DatasetInput]) -> None:
        """The data a run used, as dataset inputs (the UI's Dataset column and dataset views)."""
        if datasets:
            self.client.log_inputs(run_id, datasets=datasets)

    def resolve_run(self, reference: str) -> str:
        """A run id, or the source run of a registered model version: `models:/NAME/VERSION` or `models:/NAME@ALIAS`."""
        if not reference.startswith("models:/"):
            return reference
        from mlflow.exceptions import MlflowException

        body = reference.removeprefix("models:/")
        name, at, alias = body.partition("@")
        version = ""
        if not at:
            name, _, version = body.partition("/")
        if not name or not (alias or version.isdigit()):
            raise SweeperError(f"{reference}: give models:/NAME/VERSION (a number) or models:/NAME@ALIAS")
        try:
            found = (self.client.get_model_version_by_alias(name, alias) if alias
                     else self.client.get_model_version(name, version))
        except MlflowException as error:
            if http_status(error):
                raise
            raise SweeperError(f"{reference}: no such model version at {self.uri} "
                               f"({error.message.splitlines()[0]})") from None
        if not found.run_id:
            raise SweeperError(f"{reference} has no source run: register trials with `sweeper register RUN_ID`")
        return found.run_id

    def trial_run(self, run_id: str) -> Any:
        """A trial's (or a repeat's) run, or a SweeperError saying it does not exist or is not one."""
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(run_id)
        except MlflowException as error:
            if http_status(error):  # refused credentials are not a missing run: the CLI says so in one line
                raise
            raise SweeperError(f"no run {run_id} at {self.uri}: {error.message.splitlines()[0]}") from None
        if run.data.tags.get(Tag.ROLE) not in (Role.TRIAL, Role.REPEAT):  # a repeat trains and logs as a trial does
            raise SweeperError(f"run {run_id} is not a sweeper trial run (pick one with `sweeper best`)")
        return run

    def sweep_runs(self, experiment: str | None = None, sweep_id: str | None = None) -> list[Any]:
        """Parent runs, newest first, optionally of one experiment or one sweep."""
        experiments = self.experiment_ids(experiment)
        query = f"tags.`{Tag.ROLE}` = '{Role.SWEEP}'"
        if sweep_id:
            query += f" and tags.`{Tag.SWEEP}` = '{sweep_id}'"
        return list(self.client.search_runs(experiments, query, ViewType.ACTIVE_ONLY, order_by=["attributes.start_time DESC"]))

    def child_runs(self, parent_run_id: str, experiment_id: str, role: str | None = Role.TRIAL) -> list[Any]:
        """Child runs of a sweep with one role (`Role.TRIAL`: its trials, not its baselines or repeats); every
        child run with `role=None`."""
        query = f"tags.`{Tag.PARENT_RUN}` = '{parent_run_id}'"
        if role is not None:
            query += f" and tags.`{Tag.ROLE}` = '{role}'"
        return list(self.client.search_runs([experiment_id], query, ViewType.ACTIVE_ONLY, max_results=5000))

    def experiment_ids(self, name: str | None) -> list[str]:
        """One experiment's id, or every active experiment's."""
        if name:
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                raise SweeperError(f"no MLflow experiment named '{name}' at {self.uri}")
            return [experiment.experiment_id]
        return [e.experiment_id for e in self.client.search_experiments()]


def base_tags() -> dict[str, str]:
    """Package version and, when known, the git commit of the working tree."""
    tags = {Tag.VERSION: sweeper.__version__}
    commit = git_commit()
    if commit:
        tags[Tag.GIT_COMMIT] = commit
    return tags


@functools.cache
def git_commit() -> str | None:
    """The git commit of the installed package's checkout, if it is one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None
