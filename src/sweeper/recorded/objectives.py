"""A sweep's Optuna study as the sweep recorded it: its objectives (metric and mode each), named in the study so that
optuna-dashboard, the summary and the report read them back."""

from __future__ import annotations

import warnings

import optuna

from sweeper.direction import Objectives
from sweeper.spec import parse_objectives



def name_objectives(study: optuna.Study, objectives: Objectives) -> optuna.Study:
    """Record the objectives' metric names in a multi-objective study (optuna-dashboard and `study_objectives`
    read them); a single-objective study is returned as it is."""
    if objectives:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([metric for metric, _ in objectives])
    return study


def study_objectives(study: optuna.Study | None, tag: str | None = None) -> Objectives:
    """(metric, direction) per objective of a multi-objective sweep: the names `name_objectives` gave its study, else
    those of the parent run's `sweeper.objectives` tag (`tag`; all there is without the study), else objective_0, ...;
    empty for a single-objective study."""
    if study is not None and len(study.directions) < 2:
        return []
    tagged = parse_objectives(tag)
    if study is None or (tagged and not study.metric_names):
        return tagged
    names = study.metric_names or [f"objective_{index}" for index in range(len(study.directions))]
    return [(name, "max" if way == optuna.study.StudyDirection.MAXIMIZE else "min")
            for name, way in zip(names, study.directions)]
