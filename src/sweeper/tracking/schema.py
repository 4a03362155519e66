"""Every name sweeper stores in MLflow: run tags and their values, trial states, metric names, sweep artifacts.

Writers and readers import the names from here, so they cannot drift apart, and a store written by an
earlier release keeps reading: change a value here only with a migration.

    >>> Tag.STATE, State.COMPLETE             # a completed trial's run: tags["sweeper.state"] == "complete"
    ('sweeper.state', 'complete')
    >>> BEST_PREFIX + "auc"                   # its best validation AUC
    'best_auc'
"""

from __future__ import annotations


class Tag:
    """Run tags (`mlflow.*` ones are MLflow's own)."""

    PARENT_RUN = "mlflow.parentRunId"  # nests a trial run under its sweep's run in the UI
    SWEEP = "sweeper.sweep"  # the sweep id, on the parent run and every child
    ROLE = "sweeper.role"  # a Role value
    STATE = "sweeper.state"  # a State value
    METHOD = "sweeper.method"
    FAILURE = "sweeper.failure"  # why a trial failed: the last line of its error
    RETRIES = "sweeper.retries"  # how often Ray restarted the trial after losing its worker
    DATA_DIGEST = "sweeper.data_digest"
    VERSION = "sweeper.version"
    GIT_COMMIT = "sweeper.git_commit"
    METRIC = "sweeper.metric"  # the sweep's ranking metric and its mode
    MODE = "sweeper.mode"
    OBJECTIVES = "sweeper.objectives"  # `auc:max,trainable_params:min` of a multi-objective sweep
    BEST_RUN = "sweeper.best_run_id"
    OPTUNA_TRIAL = "optuna.trial"  # the trial's number in the Optuna study
    OPTUNA_STORAGE = "optuna.storage"  # the study's storage URL, password hidden
    RAY_TRIAL = "ray.trial_id"
    RAY_NODE = "ray.node_id"
    RAY_HOST = "ray.hostname"
    RAY_NODE_IP = "ray.node_ip"


class Role:
    """What a run is: a sweep's parent run, one of its trials, a baseline fitted beside them, or a repeat of a
    trial's configuration with another seed."""

    SWEEP = "sweep"
    TRIAL = "trial"
    BASELINE = "baseline"
    REPEAT = "repeat"


class State:
    """How a trial run ended (or that it has not)."""

    RUNNING = "running"
    COMPLETE = "complete"
    PRUNED = "pruned"
    FAILED = "failed"
    KILLED = "killed"  # interrupted: the sweep or its driver stopped
    ENDED = (COMPLETE, PRUNED, FAILED, KILLED)
    MLFLOW_STATUS = {COMPLETE: "FINISHED", PRUNED: "FINISHED", FAILED: "FAILED", KILLED: "KILLED"}


BEST_PREFIX = "best_"  # a trial's final metrics (of its best evaluation) are logged as best_auc, best_f1, ...
CI_LOW, CI_HIGH = "_ci_low", "_ci_high"  # a metric's bootstrap 95 % interval over the validation commits: auc_ci_low
EPOCH = "epoch"  # logged at every evaluation beside the task's metrics: where in training it happened
TRAIN_LOSS = "train_loss"  # and the mean training loss since the evaluation before

# Cost figures a trial logs, with the words the report and the CLI use for them.
COSTS = {
    "trainable_params": "trainable parameters",
    "total_params": "total parameters",
    "trainable_percent": "trainable %",
    "backbone_params": "backbone parameters",
    "train_seconds": "train time",
    "eval_seconds": "evaluation time",
    "samples_per_second": "samples per second",
    "peak_memory_mb": "peak memory",
    "train_flops": "training FLOPs",  # estimated, hardware-free: see sweeper.costs.train_flops
    "train_samples": "training samples",
    "epochs_run": "epochs run",
    "compute_seconds": "compute time",
}
# The costs a multi-objective sweep can minimise beside its metric.
COST_OBJECTIVES = ("trainable_params", "train_seconds", "peak_memory_mb", "compute_seconds")

# Metrics of a sweep's parent run.
TRIALS_PREFIX = "trials_"  # trials_complete, trials_pruned, ...
BEST_VALUE = "best_value"
PARETO_TRIALS = "pareto_trials"
COMPUTE_SECONDS = "compute_seconds"

# Artifacts of a sweep's parent run (a trial's own artifact files are laid out by `sweeper.artifacts`).
SPEC_FILE = "spec.yaml"
PARETO_FILE = "pareto.json"
ERROR_FOLDER = "error"  # a failed trial's traceback
REPORT_FOLDER = "report"
