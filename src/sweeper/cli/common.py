"""What several commands share: quiet MLflow downloads, and one check that the MLflow server takes our credentials."""

from __future__ import annotations

import os


def quiet_downloads() -> None:
    """No MLflow download progress bars on the terminal: the commands print their own results."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def check_server_access(uri: str | None) -> None:
    """One read request to an MLflow server (http/https URIs only): refused credentials raise here, and `main`
    turns that into one error line."""
    from sweeper.tracking.client import resolve_uri

    resolved = resolve_uri(uri)
    if resolved.startswith(("http://", "https://")):
        from mlflow import MlflowClient

        MlflowClient(resolved).search_experiments(max_results=1)
