#!/bin/sh
# Entrypoint of the sweeper image (docker/Dockerfile): sets MLflow credentials from files, then runs the command.
#
# For each NAME below, NAME_FILE=PATH sets NAME to the content of PATH (trailing newlines dropped), so that a
# credential comes from a secret (a compose secret under /run/secrets/, a mounted Kubernetes Secret) and not from
# the container's configuration:
#   MLFLOW_TRACKING_USERNAME  MLFLOW_TRACKING_PASSWORD  MLFLOW_TRACKING_TOKEN
# MLflow's client reads these variables. A Ray job started on this node inherits them from the node's `ray start`:
# they never travel in the job's runtime environment, which Ray shows to whoever lists jobs.
set -eu
for name in MLFLOW_TRACKING_USERNAME MLFLOW_TRACKING_PASSWORD MLFLOW_TRACKING_TOKEN; do
  eval "path=\${${name}_FILE:-}"
  if [ -n "$path" ]; then
    if [ ! -r "$path" ]; then
      echo "env-from-files: ${name}_FILE: cannot read $path" >&2
      exit 2
    fi
    value=$(cat "$path")
    export "$name=$value"
    unset "${name}_FILE"
  fi
done
exec "$@"
