"""Recorded sweeps read back from MLflow: a sweep's parent run, spec, trials, baselines, repeats and predictions
(`sweeps.py`), and the run notes written from them (`notes.py`). Above `sweeper.tracking` (the MLflow client and the
stored names) and below the report and the sweep driver, which read it."""
