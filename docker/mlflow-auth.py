#!/usr/bin/env python3
"""MLflow's built-in authentication (`mlflow server --app-name basic-auth`) with every credential from secret files.

docker/mlflow.Dockerfile installs this file as /usr/local/bin/mlflow-auth; docker/compose.yaml and
cluster/mlflow/kubernetes.yaml use its two commands, and tests/test_mlflow_auth.py runs both against a real server.

  mlflow-auth run COMMAND...     The image's entrypoint. Writes MLflow's auth config (basic_auth.ini: admin user and
                                 password, user database, default permission) to a private file, points
                                 MLFLOW_AUTH_CONFIG_PATH at it, sets MLFLOW_FLASK_SERVER_SECRET_KEY from its file,
                                 then runs COMMAND (`mlflow server --app-name basic-auth ...`). Without
                                 MLFLOW_AUTH_ADMIN_PASSWORD_FILE it runs COMMAND as it is.
  mlflow-auth add-user --uri URL Waits for the server, then, logged in as the admin, creates the user sweeps log as
                                 (not an admin), or sets its password if it exists. Run it after every start: the
                                 password in its secret file is the one that counts.

Environment. NAME_FILE names a file whose content is NAME's value (a compose secret, a mounted Kubernetes Secret);
the values never appear in a command line, an image or a log line.

  MLFLOW_AUTH_ADMIN_USERNAME           the admin's user name (default: admin)
  MLFLOW_AUTH_ADMIN_PASSWORD_FILE      the admin's password, 12 characters or more. MLflow creates the admin with it
                                       on the first start only; later, change it through MLflow's update-password API.
  MLFLOW_FLASK_SERVER_SECRET_KEY_FILE  the Flask secret key (CSRF protection of the UI's sign-up form); the same
                                       on every replica of the server.
  MLFLOW_AUTH_DATABASE_URI[_FILE]      the database of users and permissions, e.g. sqlite:////data/basic_auth.db or
                                       a PostgreSQL URL (the _FILE form when it holds a password)
  MLFLOW_AUTH_DEFAULT_PERMISSION       what a user may do with experiments nobody granted them: READ (default),
                                       EDIT, MANAGE or NO_PERMISSIONS. A user always gets MANAGE on what it creates.
  MLFLOW_AUTH_CONFIG_PATH              where to write basic_auth.ini (default: a new private temporary folder)
  SWEEPER_MLFLOW_USERNAME              add-user: the sweeps' user name (default: sweeper)
  SWEEPER_MLFLOW_PASSWORD_FILE         add-user: its password, 12 characters or more

Errors are one line on stderr and exit code 2, without the values.
"""

from __future__ import annotations

import argparse
import configparser
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

PERMISSIONS = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")
MIN_PASSWORD = 12  # MLflow refuses shorter passwords


class Problem(Exception):
    """A setting to fix: printed as one line."""


def setting(name: str, default: str | None = None) -> str | None:
    """NAME's value from the file in NAME_FILE, else from NAME, else `default`; surrounding whitespace dropped."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise Problem(f"{name}_FILE: cannot read {path}: {error.strerror}") from None
        if not value:
            raise Problem(f"{name}_FILE: {path} is empty")
    else:
        value = os.environ.get(name, "").strip() or default
    if value is not None and ("\n" in value or "\r" in value):
        raise Problem(f"{name}: the value must be one line")
    return value


def password(name: str) -> str:
    value = setting(name)
    if not value:
        raise Problem(f"set {name}_FILE to a file holding the password")
    if len(value) < MIN_PASSWORD:
        raise Problem(f"{name}: MLflow needs passwords of {MIN_PASSWORD} characters or more")
    return value


def write_config() -> Path:
    """basic_auth.ini from the settings, readable by this user only; returns its path."""
    permission = setting("MLFLOW_AUTH_DEFAULT_PERMISSION", "READ").upper()
    if permission not in PERMISSIONS:
        raise Problem(f"MLFLOW_AUTH_DEFAULT_PERMISSION: {permission} is not one of {', '.join(PERMISSIONS)}")
    database = setting("MLFLOW_AUTH_DATABASE_URI")
    if not database:
        raise Problem("set MLFLOW_AUTH_DATABASE_URI (or _FILE): where MLflow keeps users and permissions")
    config = configparser.ConfigParser(interpolation=None)
    config["mlflow"] = {
        "default_permission": permission,
        "database_uri": database,
        "admin_username": setting("MLFLOW_AUTH_ADMIN_USERNAME", "admin"),
        "admin_password": password("MLFLOW_AUTH_ADMIN_PASSWORD"),
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
    }
    # MLflow reads the file with interpolation on: a literal % must be written %%.
    for key, value in config["mlflow"].items():
        config["mlflow"][key] = value.replace("%", "%%")
    target = os.environ.get("MLFLOW_AUTH_CONFIG_PATH")
    path = Path(target) if target else Path(tempfile.mkdtemp(prefix="mlflow-auth-")) / "basic_auth.ini"
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        config.write(out)
    os.chmod(path, 0o600)
    return path


def run(command: list[str]) -> None:
    """Configure authentication from the secret files, then replace this process with `command`."""
    if not command:
        raise Problem("run: no command given (e.g. mlflow server --app-name basic-auth ...)")
    if os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD_FILE"):
        os.environ["MLFLOW_AUTH_CONFIG_PATH"] = str(write_config())
        secret_key = setting("MLFLOW_FLASK_SERVER_SECRET_KEY")
        if not secret_key:
            raise Problem("set MLFLOW_FLASK_SERVER_SECRET_KEY_FILE to a file holding a random key")
        os.environ["MLFLOW_FLASK_SERVER_SECRET_KEY"] = secret_key
        for name in ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_AUTH_ADMIN_USERNAME"):
            os.environ.pop(name, None)  # MLflow would prefer these to the file: the file is the one source
    try:
        os.execvp(command[0], command)
    except OSError as error:
        raise Problem(f"run: cannot run {command[0]}: {error.strerror}") from None


def wait_for(uri: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            raise Problem(f"add-user: no MLflow server answered at {uri}/health in {seconds:.0f} s")
        time.sleep(2)


def add_user(uri: str, seconds: float) -> str:
    """Create the sweeps' user (not an admin) or set its password; returns what was done."""
    username = setting("SWEEPER_MLFLOW_USERNAME", "sweeper")
    secret = password("SWEEPER_MLFLOW_PASSWORD")
    admin = setting("MLFLOW_AUTH_ADMIN_USERNAME", "admin")
    admin_password = password("MLFLOW_AUTH_ADMIN_PASSWORD")
    if username == admin:
        raise Problem("SWEEPER_MLFLOW_USERNAME: the sweeps' user must not be the admin")
    wait_for(uri, seconds)
    os.environ.update({"MLFLOW_TRACKING_USERNAME": admin, "MLFLOW_TRACKING_PASSWORD": admin_password,
                       "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2"})
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient

    client = AuthServiceClient(uri)
    try:
        try:
            user = client.get_user(username)
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            client.create_user(username, secret)
            return f"created MLflow user {username}"
        if user.is_admin:
            raise Problem(f"add-user: {username} is an MLflow admin; sweeps should log as an ordinary user")
        client.update_user_password(username, secret)
        return f"MLflow user {username} exists; password set from its secret"
    except MlflowException as error:  # its message may quote the request: print the code only
        status = error.get_http_status_code()
        hint = " (the admin's password is set only at the server's first start)" if status == 401 else ""
        raise Problem(f"add-user: the server at {uri} answered {error.error_code} (HTTP {status}){hint}") from None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args[:1] == ["run"]:
            command = args[1:]
            run(command[1:] if command[:1] == ["--"] else command)
            return 0  # not reached: exec
        parser = argparse.ArgumentParser(prog="mlflow-auth", description=__doc__.splitlines()[0])
        commands = parser.add_subparsers(dest="command", required=True)
        commands.add_parser("run", help="write basic_auth.ini from secret files, then run a command")
        add = commands.add_parser("add-user", help="create the sweeps' MLflow user, or set its password")
        add.add_argument("--uri", required=True, help="the MLflow server, e.g. http://mlflow:5000")
        add.add_argument("--wait", type=float, default=300, help="seconds to wait for the server (default 300)")
        options = parser.parse_args(args)
        print(add_user(options.uri, options.wait), flush=True)
        return 0
    except Problem as problem:
        print(f"mlflow-auth: error: {problem}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
