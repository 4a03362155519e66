"""Tasks: what differs between them (the model, the encoding, the loss, evaluation, metrics, the predictions file).

`run_trial` is the same recipe for every task; it asks `task_for(config)` for the parts that differ. Each task
declares its metrics: those every evaluation reports, those scored on generated text (only when messages are
generated), which are lower-is-better, and which a ranking shows. Usage::

    task = task_for(config)                 # DefectPrediction or MessageGeneration
    model = task.load_model(config.backbone)
    scores = task.evaluate(model, items, device, score=True)

Each module of this package that defines a `TASK` (a class that follows `sweeper.tasks.base.Task`) is a task;
`TASKS` maps the task names (a spec's `task`) to them. A task defined elsewhere joins with `register_task`
(docs/guides/add-a-task.md).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

from sweeper.errors import SweeperError
from sweeper.tasks.base import Scores, Prediction, Task

if TYPE_CHECKING:
    from sweeper.config import TrialConfig

__all__ = ["TASKS", "Scores", "Prediction", "Task", "register_task", "task_class", "task_for"]


def discover() -> dict[str, type[Task]]:
    """The `TASK` of every module in this package, by name, in the order the modules sort."""
    found: dict[str, type[Task]] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        task = getattr(importlib.import_module(f"{__name__}.{info.name}"), "TASK", None)
        if task is not None:
            found[task.name] = task
    return found


TASKS: dict[str, type[Task]] = discover()


def register_task(task: type[Task]) -> type[Task]:
    """Add a task defined outside this package to `TASKS` (by its `name`); returns it, so it can decorate the class."""
    TASKS[task.name] = task
    return task


def task_class(name: str) -> type[Task]:
    """The task a spec names (`jitdp`, `cmg`, or one registered)."""
    if name not in TASKS:
        raise SweeperError(f"unknown task '{name}': use one of {', '.join(TASKS)}")
    return TASKS[name]


def task_for(config: TrialConfig) -> Task:
    """The task object for `config.task`."""
    return task_class(config.task)(config)
