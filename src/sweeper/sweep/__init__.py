"""Running a sweep: the search space, Optuna's searcher and pruner inside Ray Tune, the driver, the Ray trainable,
the callbacks that record trials in MLflow and draw progress, and Ray jobs on a cluster."""
