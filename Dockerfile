# syntax=docker/dockerfile:1
# One image per role, smallest install that role needs (see pyproject extras):
#   ingest  base install only (no mlflow, no litellm)  -> also used by beat
#   worker  [worker]  retrieval, LLM stages, MLflow client (mlflow-skinny)
#   flower  [flower]
#   mlflow  [server]  the MLflow tracking server and `technoshare eval`
# Build one with: docker build --target worker -t technoshare:worker .
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS source
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
CMD ["celery", "-A", "tasks", "worker", "-Q", "io", "-P", "prefork", "-l", "INFO"]

FROM source AS flower
RUN pip install ".[flower]"
USER app
EXPOSE 5555
CMD ["celery", "-A", "tasks", "flower", "--address=0.0.0.0", "--port=5555"]

FROM source AS mlflow
RUN pip install ".[server]"
USER app
EXPOSE 5000
ENV MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
CMD ["mlflow", "server", "--backend-store-uri", "sqlite:////data/mlflow.db", \
     "--artifacts-destination", "/data/artifacts", "--host", "0.0.0.0", "--port", "5000", \
     "--workers", "2", "--allowed-hosts", "mlflow,mlflow:*,localhost,localhost:*,127.0.0.1,127.0.0.1:*"]
