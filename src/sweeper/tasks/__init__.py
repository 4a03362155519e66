"""What differs between the tasks: the model, the encoding, the loss, evaluation, metrics and the predictions file.

`run_trial` is the same recipe for every task; it asks `task_for(config)` for the parts that differ. Each task
declares its metrics: those every evaluation reports, those scored on generated text (only when messages are
generated), which are lower-is-better, and which a ranking shows. Usage::

    task = task_for(config)                 # DefectPrediction or MessageGeneration
    model = task.load_model(config.backbone)
    evaluated = task.evaluate(model, items, device, score=True)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sweeper.tasks.base import Evaluated, Prediction, Task

if TYPE_CHECKING:
    from sweeper.config import TrialConfig

__all__ = ["Evaluated", "Prediction", "Task", "task_class", "task_for"]


def task_class(name: str) -> type[Task]:
    """The task a spec names: `jitdp` or `cmg`."""
    from sweeper.tasks.defects import DefectPrediction
    from sweeper.tasks.messages import MessageGeneration

    return {task.name: task for task in (DefectPrediction, MessageGeneration)}[name]


def task_for(config: TrialConfig) -> Task:
    """The task object for `config.task`."""
    return task_class(config.task)(config)
