"""The sweep's Optuna study: where it is stored (the spec's `tracking.study`, else a SQLite file per sweep), how it is
shown (without its password) and how it is opened (created, or loaded when a sweep resumes)."""

from __future__ import annotations

from pathlib import Path

import optuna

from sweeper.direction import Direction
from sweeper.folders import cache_dir
from sweeper.recorded.objectives import name_objectives
from sweeper.spec import Spec
from sweeper.sweep.pruning import make_pruner
from sweeper.sweep.search import make_sampler


def open_study(spec: Spec, sweep_id: str, storage: str) -> optuna.Study:
    """The sweep's Optuna study (created, or loaded when resuming), with the spec's sampler, pruner and directions."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return name_objectives(optuna.create_study(
        study_name=sweep_id, storage=storage, load_if_exists=True,
        directions=[Direction(mode).optuna for _, mode in spec.objectives()] or [Direction(spec.mode).optuna],
        sampler=make_sampler(spec), pruner=make_pruner(spec.sweep.pruner)), spec.objectives())


def study_storage(spec: Spec, sweep_id: str) -> str:
    """The spec's `tracking.study`, else `default_study_storage`."""
    return spec.tracking.study or default_study_storage(spec.tracking.storage, sweep_id)


def default_study_storage(storage: str, sweep_id: str) -> str:
    """A SQLite file per sweep: beside Ray's results in a local folder, else (S3) in `$SWEEPER_CACHE/studies`."""
    if "://" in storage:
        folder = cache_dir() / "studies" / sweep_id
    else:
        folder = Path(storage).expanduser().resolve() / sweep_id
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'optuna.db'}"


def redact(url: str) -> str:
    """A storage URL without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy URL: show nothing of it that could be secret
        return url.split("@")[-1]
