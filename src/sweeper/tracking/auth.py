"""MLflow servers with authentication (`mlflow server --app-name basic-auth`).

sweeper adds no credential handling of its own: MLflow's client reads MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD (HTTP basic auth), or MLFLOW_TRACKING_TOKEN (a Bearer token, for servers behind a proxy
that takes tokens), from the environment at every request (`mlflow.utils.credentials.get_default_host_creds`;
the environment wins over the file ~/.mlflow/credentials, which it also reads).
What this module adds is one clear line when the server refuses them, instead of a traceback, and never the
credentials themselves.

    error: the MLflow server at http://mlflow:5000 refused the credentials (HTTP 401): set MLFLOW_TRACKING_USERNAME
    and MLFLOW_TRACKING_PASSWORD to an MLflow user's name and password, or MLFLOW_TRACKING_TOKEN (none of them is set)
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

CREDENTIAL_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


def http_status(error: BaseException) -> int | None:
    """401 or 403 when `error` (or an error it was raised from) is an MLflow server refusing a request, else None."""
    from mlflow.exceptions import MlflowException

    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MlflowException) and current.get_http_status_code() in (401, 403):
            return current.get_http_status_code()
        current = current.__cause__ or current.__context__
    return None


def shown_uri(uri: str | None) -> str:
    """A tracking URI fit to print: any user name and password in it left out."""
    if not uri:
        return "(MLFLOW_TRACKING_URI)"
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def refusal(error: BaseException, uri: str | None) -> str | None:
    """One line for an MLflow server that refused the credentials (401) or the user (403); None for other errors."""
    status = http_status(error)
    where = f"the MLflow server at {shown_uri(uri)}"
    if status == 401:
        given = [name for name in CREDENTIAL_ENV if os.environ.get(name)]
        state = (f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} set but not accepted" if given
                 else "none of them is set")
        if not given and Path("~/.mlflow/credentials").expanduser().is_file():  # MLflow's client reads it too
            state += "; ~/.mlflow/credentials was not accepted"
        return (f"{where} refused the credentials (HTTP 401): set MLFLOW_TRACKING_USERNAME and "
                f"MLFLOW_TRACKING_PASSWORD to an MLflow user's name and password, or MLFLOW_TRACKING_TOKEN ({state})")
    if status == 403:
        user = os.environ.get("MLFLOW_TRACKING_USERNAME")
        return (f"{where} denied {f'user {user!r}' if user else 'the request'} (HTTP 403): an MLflow admin must grant "
                "the user EDIT on the experiment, or use the user that created it")
    return None
