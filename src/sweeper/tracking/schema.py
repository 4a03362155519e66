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
    FAILURE_KIND = "sweeper.failure_kind"  # a FailureKind value: how the failure was handled
    RETRIES = "sweeper.retries"  # how often Ray restarted the trial from its checkpoint (0 when never)
    RETRY_REASON = "sweeper.retry_reason"  # the error of the last restart: a lost worker or node, usually
    DATA_DIGEST = "sweeper.data_digest"
    ENCODING_KEY = "sweeper.encoding_key"  # names the trial's encoded splits in its node's cache
    FROZEN_CACHE = "sweeper.frozen_cache"  # the frozen-prefix cache: layer, built or reused, key; or why it was off
    MEMORY_PLAN = "sweeper.memory_plan"  # the estimated peak memory against the device's room (`sweeper.memory`)
    PRECISION = "sweeper.precision"  # the precision the trial ran at: `precision: auto` resolved on its device
    VERSION = "sweeper.version"
    MACHINE = "sweeper.machine"  # JSON: the CPU, its kernel flags, the GPU, torch and its math libraries (machine.py)
    MACHINE_KIND = "sweeper.machine_kind"  # a digest of MACHINE: `reproduce` demands identical numbers on the same kind
    GIT_COMMIT = "sweeper.git_commit"
    METRIC = "sweeper.metric"  # the sweep's ranking metric and its mode
    MODE = "sweeper.mode"
    OBJECTIVES = "sweeper.objectives"  # `auc:max,trainable_params:min` of a multi-objective sweep
    BEST_RUN = "sweeper.best_run_id"
    BASELINE = "sweeper.baseline"  # a baseline run's name: lapredict, expert_lr
    REPEAT_OF = "sweeper.repeat_of"  # a repeat run: the run id of the trial whose configuration it re-trains
    REPEAT_OF_TRIAL = "sweeper.repeat_of_trial"  # and that trial's Optuna number
    OPTUNA_TRIAL = "optuna.trial"  # the trial's number in the Optuna study
    OPTUNA_STORAGE = "optuna.storage"  # the study's storage URL, password hidden
    RAY_TRIAL = "ray.trial_id"
    RAY_NODE = "ray.node_id"
    RAY_HOST = "ray.hostname"
    RAY_NODE_IP = "ray.node_ip"
    STOPPED = "sweeper.stopped"  # JSON on a sweep's parent run that stopped as decided: reason, trials, bound, error
    NOTE = "mlflow.note.content"  # the Description of a run in the UI, Markdown: what a trial or a sweep came to
    EXPERIMENT_KIND = "mlflow.experimentKind"  # experiment tag: which page the UI opens the experiment on
    DATASET_CONTEXT = "mlflow.data.context"  # tag of a run's dataset input: its split's role (DatasetRole)


class Role:
    """What a run is: a sweep's parent run, one of its trials, a baseline fitted beside them, or a repeat of a
    trial's configuration with another seed."""

    SWEEP = "sweep"
    TRIAL = "trial"
    BASELINE = "baseline"
    REPEAT = "repeat"


class DatasetRole:
    """What a split of a trial's data is for, as the dataset input of its run says."""

    TRAIN = "train"
    VALIDATION = "validation"
    TEST = "test"


class State:
    """How a trial run ended (or that it has not)."""

    RUNNING = "running"
    COMPLETE = "complete"
    PRUNED = "pruned"
    FAILED = "failed"
    KILLED = "killed"  # interrupted: the sweep or its driver stopped
    ENDED = (COMPLETE, PRUNED, FAILED, KILLED)
    MLFLOW_STATUS = {COMPLETE: "FINISHED", PRUNED: "FINISHED", FAILED: "FAILED", KILLED: "KILLED"}


class FailureKind:
    """How a failed trial failed: raised by the trial itself, so a retry would fail the same way (bad data, a NaN
    loss, out of memory at this size; never retried), or lost to the infrastructure (a worker or node died; retried
    from the last checkpoint, FAILED once the retries ran out)."""

    DETERMINISTIC = "deterministic"
    INFRASTRUCTURE = "infrastructure"


BEST_PREFIX = "best_"  # a trial's final metrics (of its best evaluation) are logged as best_auc, best_f1, ...
CI_LOW, CI_HIGH = "_ci_low", "_ci_high"  # a metric's bootstrap 95 % interval over the validation commits: auc_ci_low


def final_metric_name(key: str) -> str:
    """The name a trial's final metric is stored under: best_auc for auc; an interval keeps its own name, since no
    per-evaluation auc_ci_low exists for a prefix to tell it apart from.

    >>> final_metric_name("auc"), final_metric_name("auc_ci_low")
    ('best_auc', 'auc_ci_low')
    """
    return key if key.endswith((CI_LOW, CI_HIGH)) else BEST_PREFIX + key

# A rolling trial (`data.split.folds`) reports once per validation window, at step = the window's number (from 1):
# the task's metrics pooled over the windows so far (`auc`, ...: the pruner compares trials at the same window) and
# the window's own figures as WINDOW_PREFIX + name (`window_auc`; none where the window's commits are of one class).
WINDOW_PREFIX = "window_"
WINDOW_COUNTS = ("commits", "defective", "train_commits")  # window_commits, ...: what the window held, trained on


def window_metric_name(key: str) -> str:
    """A rolling window's own figure: window_auc for auc."""
    return WINDOW_PREFIX + key

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
    "estimated_memory_mb": "estimated peak memory",  # before training, sweeper.memory: its error shows beside the peak
    "train_flops": "training FLOPs",  # estimated, hardware-free: see sweeper.costs.train_flops
    "train_samples": "training samples",
    "micro_batch_size": "micro-batch size",  # commits per forward pass: batch_size / grad_accum
    "effective_batch_size": "effective batch size",  # commits per optimiser step: batch_size
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
# Logged before the first trial (sweeper.metrics.resolution): the smallest difference of the decision metric the
# validation split resolves at 95 %, and the split's size (defective commits for JIT-DP).
RESOLVABLE_DIFFERENCE = "resolvable_difference"
VALIDATION_COMMITS = "validation_commits"
VALIDATION_POSITIVES = "validation_positives"
# The stopping check (sweeper.sweep.stopping), logged after each ended trial at step = trials ended: the improvement
# still possible (Optuna's regret bound), the best trial's bootstrap standard error, and (when: decided) over how many
# ended trials the verdict has stayed the same; the trial budget (`sweep.trials`), logged at the start.
STOP_BOUND = "stop_bound"
STOP_ERROR = "stop_error"
STOP_UNCHANGED = "stop_verdict_unchanged"
BUDGET_TRIALS = "budget_trials"
# An Optuna trial's user attribute: the bootstrap 95 % interval [low, high] of the sweep's metric, which the stopping
# check's error evaluator reads back from the study (a resumed sweep's too).
INTERVAL_ATTR = "sweeper.interval"

# The experiment kind of training runs ("Machine learning"), the one MLflow's UI writes when a user picks its runs
# view: UIs that choose the page from the kind open the runs table, not the GenAI overview. (MLflow 3.17's UI
# chooses from its own GenAI / Model training switch instead: the URLs sweeper prints set it, see views.py.)
TRAINING_KIND = "custom_model_development"
# A saved view of the runs table is an experiment tag VIEW_PREFIX + view id (JSON: name, times, the view's state);
# the UI opens it from its "Views" menu or a runs-page URL with `?VIEW_URL_KEY=view id`.
VIEW_PREFIX = "mlflow.sharedViewState."
VIEW_URL_KEY = "viewStateShareKey"
SWEEP_VIEW_PREFIX = "sweep-"  # the ids of the views sweeper saves, one per sweep
# A registered trial's model: the pyfunc's artifact (what `sweeper export` writes) and the version's tags.
REGISTERED_ARTIFACT = "trial"

# A trial's validation predictions, read back by reports and `sweeper reproduce` (the trial's other artifact files
# are laid out by `sweeper.artifacts`).
PREDICTIONS_FILE = "predictions.csv"

# Artifacts of a sweep's parent run.
SPEC_FILE = "spec.yaml"
PARETO_FILE = "pareto.json"
VERDICT_FILE = "verdict.json"  # the verdict and every comparison it rests on (sweeper.report.verdict.Verdict.as_dict)
ERROR_FOLDER = "error"  # a failed trial's traceback
REPORT_FOLDER = "report"
REPORT_HTML = "report.html"  # the report's page, under REPORT_FOLDER
