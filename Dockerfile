# syntax=docker/dockerfile:1
# One image per role, smallest install that role needs (see pyproject extras):
#   ingest  base install only (no mlflow, no litellm)  -> also used by beat
#   worker  [worker]  retrieval, LLM stages, MLflow client (mlflow-skinny)
#   flower  [flower]
#   mlflow  [server]  the MLflow tracking server and `technoshare eval`
# Build one with: docker build --target worker -t technoshare:worker .
# Pinned (no floating tag): a rebuild gets the same base until this line changes.
ARG PYTHON_VERSION=3.11.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS source
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    LITELLM_OFFLINE_MODE=true \
    MLFLOW_DISABLE_TELEMETRY=true \
    MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT=true \
    STATE_DIR=/data
RUN useradd --create-home --uid 10001 app && mkdir -p /data && chown app /data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY services ./services
COPY tasks ./tasks
COPY observability ./observability
COPY prompts ./prompts
COPY eval ./eval
COPY data ./data

FROM source AS ingest
RUN pip install .
USER app
EXPOSE 3000
HEALTHCHECK --interval=15s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:3000/readyz', timeout=2).status != 200)"
CMD ["technoshare", "ingest", "--host", "0.0.0.0", "--port", "3000"]

FROM source AS worker
RUN pip install ".[worker]"
USER app
# compose runs three of these: -Q io (fetching), -Q post (posting), -Q llm -P threads
CMD ["celery", "-A", "tasks", "worker", "-Q", "io", "-P", "prefork", "-l", "INFO"]

FROM source AS flower
RUN pip install ".[flower]"
USER app
EXPOSE 5555
CMD ["celery", "-A", "tasks", "flower", "--address=0.0.0.0", "--port=5555"]

FROM source AS mlflow
# [server] brings psycopg2-binary, the driver of the PostgreSQL store compose gives it
# (MLFLOW_BACKEND_STORE_URI=postgresql+psycopg2://...); without that variable: sqlite on /data.
# `--app-name technoshare` (this project's entry point, observability/mlflow_server_app.py):
# MLflow's server plus the one-request run write; TECHNOSHARE_MLFLOW_AUTH=basic wraps MLflow's
# basic-auth app, which needs mlflow[auth] (Flask-WTF) and MLFLOW_FLASK_SERVER_SECRET_KEY at run
# time; its config: users in /data (the volume), no permission for anyone but the admin
# (MLFLOW_AUTH_ADMIN_USERNAME/_PASSWORD, created on the first start against an empty user store).
RUN pip install ".[server]" "mlflow[auth]==3.17.2" \
 && python -c "import psycopg2" \
 && mkdir -p /etc/mlflow \
 && printf '%s\n' '[mlflow]' 'default_permission = NO_PERMISSIONS' \
      'database_uri = sqlite:////data/basic_auth.db' \
      'authorization_function = mlflow.server.auth:authenticate_request_basic_auth' \
      > /etc/mlflow/basic_auth.ini
USER app
EXPOSE 5000
ENV MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
    MLFLOW_AUTH_CONFIG_PATH=/etc/mlflow/basic_auth.ini \
    MLFLOW_BACKEND_STORE_URI=sqlite:////data/mlflow.db \
    TECHNOSHARE_MLFLOW_AUTH=basic
CMD ["mlflow", "server", "--app-name", "technoshare", \
     "--artifacts-destination", "/data/artifacts", "--host", "0.0.0.0", "--port", "5000", \
     "--workers", "2", "--allowed-hosts", "mlflow,mlflow:*,localhost,localhost:*,127.0.0.1,127.0.0.1:*"]
