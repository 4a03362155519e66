# syntax=docker/dockerfile:1
#
# The MLflow tracking server for sweeper: MLflow at the version pyproject.toml pins (clients and
# server alike) with its built-in authentication (`mlflow[auth]`), PostgreSQL as the backend store
# (psycopg2-binary) and S3 as the artifact store (boto3). Clients log artifacts through the server
# (`--artifacts-destination s3://...`), so only the server holds S3 credentials.
#
#   docker build -f docker/mlflow.Dockerfile -t sweeper-mlflow:3.17.2 .
#
# Run (see docker/compose.yaml for a complete local stack, cluster/mlflow/kubernetes.yaml for Kubernetes):
#   mlflow server --app-name basic-auth --backend-store-uri postgresql://USER:PASSWORD@HOST:5432/mlflow \
#     --artifacts-destination s3://BUCKET/mlflow --host 0.0.0.0 --port 5000 \
#     --allowed-hosts NAME-CLIENTS-USE,NAME-CLIENTS-USE:*,localhost,localhost:*
# with AWS credentials in the environment (or an instance/pod role) and, for an S3-compatible store
# that is not AWS, MLFLOW_S3_ENDPOINT_URL=http://HOST:PORT.
# MLflow 3.x rejects requests whose Host header is not localhost or a private IP unless it is listed
# in --allowed-hosts (DNS-rebinding protection): list the name the Ray nodes use to reach the server.
#
# Authentication: the entrypoint, `mlflow-auth run` (docker/mlflow-auth.py), writes MLflow's
# basic_auth.ini to a private file at start from secret files (MLFLOW_AUTH_ADMIN_PASSWORD_FILE,
# MLFLOW_FLASK_SERVER_SECRET_KEY_FILE, ...), then runs the command. `mlflow-auth add-user` creates
# the ordinary user the sweeps log as. No secrets are baked into this image.

ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim-bookworm

# Keep in step with pyproject.toml's `mlflow==3.17.*` and docker/Dockerfile's MLFLOW_VERSION.
ARG MLFLOW_VERSION=3.17.2

LABEL org.opencontainers.image.title="sweeper-mlflow" \
      org.opencontainers.image.version="${MLFLOW_VERSION}" \
      org.opencontainers.image.description="MLflow tracking server (PostgreSQL backend, S3 artifacts) for sweeper"

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# mlflow[auth]: Flask-WTF, which `--app-name basic-auth` needs.
RUN pip install "mlflow[auth]==${MLFLOW_VERSION}" "psycopg2-binary>=2.9" "boto3>=1.34" \
 && python -c "import mlflow, psycopg2, boto3, flask_wtf; assert mlflow.__version__ == '${MLFLOW_VERSION}', mlflow.__version__"

COPY --chmod=755 docker/mlflow-auth.py /usr/local/bin/mlflow-auth

# /home/mlflow/auth: where docker/compose.yaml keeps the users database (a volume, owned by this user).
RUN useradd --create-home --uid 1000 mlflow \
 && mkdir -p /home/mlflow/auth && chown mlflow:mlflow /home/mlflow/auth
USER mlflow
WORKDIR /home/mlflow
EXPOSE 5000
ENTRYPOINT ["mlflow-auth", "run", "--"]
CMD ["mlflow", "server", "--app-name", "basic-auth", "--host", "0.0.0.0", "--port", "5000"]
