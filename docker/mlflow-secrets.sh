#!/bin/sh
# Makes the MLflow secrets of the compose stack (docker/compose.yaml), once: one random value per file in
# DIR (default: $MLFLOW_SECRETS_DIR, else ~/.config/sweeper/mlflow), outside the repository. Existing files
# are kept, so running it again changes nothing.
#
#   sh docker/mlflow-secrets.sh [DIR]
#
#   admin_password     MLflow's admin (used at the server's first start, and by the mlflow-users one-shot)
#   sweeper_password   the ordinary user `sweeper` that sweeps log as (the Ray head's secret; yours to export)
#   flask_secret_key   the MLflow server's Flask secret key
#
# The folder is private (700). The files are readable (644) because compose mounts them as they are and
# the MLflow container runs as uid 1000, which need not be yours; the folder keeps other users out.
set -eu
dir=${1:-${MLFLOW_SECRETS_DIR:-$HOME/.config/sweeper/mlflow}}
mkdir -p "$dir"
chmod 700 "$dir"
for name in admin_password sweeper_password flask_secret_key; do
  if [ ! -s "$dir/$name" ]; then
    python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > "$dir/$name"
    echo "made $dir/$name"
  fi
  chmod 644 "$dir/$name"
done
