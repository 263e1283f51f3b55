"""Observability: every job as MLflow runs and one trace, recorded through one seam.

The public seam is ``observability.recorder`` (``Recorder``, ``get_recorder``,
``install_recorder``, ``NullRecorder``); ``observability.setup.configure`` installs the MLflow
recorder for a process. Modules import in one direction, bottom to top:

    records, health, derive, ledger        plain records and helpers
    mlflow_store, tracing                  the MLflow client and spans
    mlflow_batch                           a whole run in one request (the server's endpoint)
    outbox, mlflow_parent, mlflow_writes   where records wait; who creates a parent; how they are written
    writer                                 the background writer thread
    runtime                                one per process: store, health, ledger, outbox, writer
    backend                                MlflowRecorder (the Recorder on top of a runtime)
    setup                                  choose, install and warm up a recorder

``mlflow_server_app`` runs in the MLflow server, not here: ``mlflow server --app-name
technoshare`` (MLflow's app plus the endpoint ``mlflow_batch`` calls; nothing imports it),
on ``mlflow_server_write`` (the write) and ``mlflow_server_artifacts`` (the run's texts).

Importing this package (and ``observability.recorder``) is cheap: no mlflow.
"""
