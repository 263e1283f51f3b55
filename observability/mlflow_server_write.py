"""The write behind the ``technoshare`` server app's ``runs/write`` endpoint, server side.

``write`` takes a checked ``WriteRequest`` (``observability/mlflow_server_app.py`` parses it)
and writes the run through the server's own tracking store and proxied artifact repository.

Two ways, the same rows:
- **One transaction** (``_create_in_one_transaction``): a NEW run whose id the client chose
  (``new_run_id``, its record id) on exactly MLflow's ``SqlAlchemyStore`` (sqlite, PostgreSQL,
  MySQL). MLflow's own calls spend a session, its sqlite PRAGMAs and a commit on each part of
  a run: ``create_run`` (its experiment look-up in a session of its own, then the entity it
  answers, loaded lazily), ``log_batch`` (params, metrics, tags: a session each, every one
  re-reading the run) and ``update_run_info``. Measured for a stage run (12 tags, 6 params,
  10 metrics, one artifact) on sqlite: 35 ms of server CPU a write, 22 ms of it in those calls.
  Here the artifacts are written first, then the rows those calls would make (``runs``,
  ``tags``, ``params``, ``metrics``, ``latest_metrics``, with the values they would give them)
  go in one transaction: a run is in the database only with its artifacts, and a write that
  failed left no row and is simply sent again.
- **An existing run** (``run_id``: the parent's end) on the same store: its params, tags,
  metrics and termination in one transaction too (``_update_in_one_transaction``), as the rows
  ``log_batch`` and ``update_run_info`` would leave them.
- **The store's calls** (``_write_with_store_calls``): everything else. What MLflow must answer
  itself (a missing or deleted run, a param whose value would change), a run name or artifacts
  on an existing run, another store, or a subclass of the SQL store (the workspace-aware one
  scopes its queries).

Idempotence. With ``new_run_id``, whether the run was written already is a primary-key
look-up, and two concurrent writes of one run cannot both insert: the loser's unique-key
violation reads as "written already". ``find_by_tag`` (a search over the experiment's runs,
which grows with it) finds runs whose ids MLflow chose: the client sends it on a replay, and
the store's calls use it whenever it is given.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass, field, replace
from typing import Any

from observability.mlflow_server_artifacts import served, write_texts

ARTIFACTS_FOLDER = "artifacts"  # SqlAlchemyStore.ARTIFACTS_FOLDER_NAME
SCHEMA_VERSION = "3.17"  # the MLflow release whose tables the one-transaction write fills
MLFLOW_RUN_NAME = "mlflow.runName"
_MAX_FLOAT = 1.7976931348623157e308  # what MLflow stores for +/- infinity

log = logging.getLogger("mlflow.server.technoshare")


class BadInput(ValueError):
    """A 4xx: what is wrong with the request (names fields, never echoes values)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class NotServed(Exception):
    """The run's artifacts are not this server's to write: the client uses the standard calls."""


@dataclass
class WriteRequest:
    run_id: str | None = None
    experiment_id: str | None = None
    new_run_id: str | None = None
    start_time: int | None = None
    user_id: str = "unknown"
    tags: dict[str, str] = field(default_factory=dict)
    find_by_tag: str | None = None
    metrics: list[tuple[str, float, int, int]] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    status: str | None = None
    end_time: int | None = None


def entities(req: WriteRequest) -> tuple[list[Any], list[Any], list[Any]]:
    from mlflow.entities import Metric, Param, RunTag

    return (
        [Metric(k, v, t, s) for k, v, t, s in req.metrics],
        [Param(k, v) for k, v in req.params.items()],
        [RunTag(k, v) for k, v in req.tags.items()],
    )


def _found_by_tag(store: Any, req: WriteRequest) -> Any:
    from mlflow.entities import ViewType

    key = req.find_by_tag
    assert key is not None and req.experiment_id is not None
    runs = store.search_runs(
        [req.experiment_id], f"tags.`{key}` = '{req.tags[key]}'", ViewType.ACTIVE_ONLY, 1
    )
    return runs[0] if runs else None


def _answer(run_id: str, *, created: bool, written: bool = True) -> dict[str, Any]:
    return {"run_id": run_id, "created": created, "written": written}


def write(req: WriteRequest) -> dict[str, Any]:
    """Write the run; ``{"run_id", "created", "written"}`` (``written`` False: it was written
    and terminated already, and nothing was changed)."""
    from mlflow.server.handlers import _get_tracking_store
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = _get_tracking_store()
    if type(store) is SqlAlchemyStore and _schema_known():
        if req.run_id is None and req.new_run_id:
            return _write_by_chosen_id(store, req)
        if req.run_id is not None and (done := _update_in_one_transaction(store, req)):
            return done
    return _write_with_store_calls(store, req)


@functools.cache
def _schema_known() -> bool:
    """The rows are written as MLflow ``SCHEMA_VERSION`` writes them (the tests hold them equal
    to its calls'); another MLflow version gets its own calls until they are checked again."""
    import mlflow

    known = mlflow.__version__.startswith(SCHEMA_VERSION + ".")
    if not known:
        log.warning("MLflow %s: run writes go through its store calls (the one-transaction "
                    "write is checked against %s.x)", mlflow.__version__, SCHEMA_VERSION)  # fmt: skip
    return known


def _terminated(status: str) -> bool:
    from mlflow.entities import RunStatus

    return bool(RunStatus.is_terminated(RunStatus.from_string(status)))


def _write_by_chosen_id(store: Any, req: WriteRequest) -> dict[str, Any]:
    """A new run under ``new_run_id``: its checks, look-up and insert in one session (and one
    transaction); a replay's search by tag, when asked, before the insert (in the store's own
    session: it only reads)."""
    from mlflow.store.tracking.dbmodels.models import SqlExperiment, SqlRun

    assert req.new_run_id is not None and req.experiment_id is not None
    run_id = req.new_run_id
    with store.ManagedSessionMaker(read_only=False) as session:
        experiment = (
            session.query(SqlExperiment.lifecycle_stage, SqlExperiment.artifact_location)
            .filter(SqlExperiment.experiment_id == int(req.experiment_id))
            .one_or_none()
        )
        found_by_id = (
            session.query(SqlRun.status, SqlRun.experiment_id)
            .filter(SqlRun.run_uuid == run_id)
            .one_or_none()
        )
        # raised after the session: inside it, MLflow's session maker makes any error a 500
        problem = _target_problem(req, experiment, found_by_id)
        status = found_by_id.status if found_by_id is not None else None
        replay = problem is None and status is None and req.find_by_tag
        if replay and (found := _found_by_tag(store, req)) is not None:  # written the standard
            run_id, status = found.info.run_id, found.info.status  # way, its id MLflow's
        if problem is None and status is None:
            if _create_in_one_transaction(store, req, experiment.artifact_location, session):
                return _answer(run_id, created=True)
            status = _status_of(session, run_id)  # a concurrent write of it won the insert
    if problem is not None:
        raise problem
    assert status is not None  # found, or made by a concurrent write
    if _terminated(status):
        return _answer(run_id, created=False, written=False)
    existing = replace(req, run_id=run_id, experiment_id=None, new_run_id=None, find_by_tag=None)
    return _write_with_store_calls(store, existing)


def _target_problem(req: WriteRequest, experiment: Any, found_by_id: Any) -> Exception | None:
    if experiment is None:
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

        return MlflowException(
            f"No Experiment with id={req.experiment_id} exists", RESOURCE_DOES_NOT_EXIST
        )
    if experiment.lifecycle_stage != "active":
        return BadInput("the experiment is deleted")
    if req.artifacts and not served(experiment.artifact_location):
        return NotServed("the experiment's artifacts are not served by this server")
    if found_by_id is not None and str(found_by_id.experiment_id) != req.experiment_id:
        return BadInput("'new_run_id' names a run of another experiment", 409)
    return None


def _status_of(session: Any, run_id: str) -> str:
    from mlflow.store.tracking.dbmodels.models import SqlRun

    return str(session.query(SqlRun.status).filter(SqlRun.run_uuid == run_id).scalar())


def _metric_rows(req: WriteRequest, run_id: str) -> tuple[list[dict[str, Any]], list[Any]]:
    """The ``metrics`` rows (exact repeats once, as MLflow's log_batch ends up with them) and
    the ``latest_metrics`` rows: per key the greatest (step, timestamp, value)."""
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for key, number, stamp, step in req.metrics:
        is_nan = math.isnan(number)
        value = 0.0 if is_nan else max(-_MAX_FLOAT, min(_MAX_FLOAT, number))
        row = {"key": key, "value": value, "timestamp": stamp, "step": step, "is_nan": is_nan,
               "run_uuid": run_id}  # fmt: skip
        rows.setdefault((key, stamp, step, value, is_nan), row)
    latest: dict[str, dict[str, Any]] = {}
    for row in rows.values():
        best = latest.get(str(row["key"]))
        if best is None or (row["step"], row["timestamp"], row["value"]) > (
            best["step"], best["timestamp"], best["value"]
        ):  # fmt: skip
            latest[str(row["key"])] = row
    return list(rows.values()), list(latest.values())


def _create_in_one_transaction(
    store: Any, req: WriteRequest, location: str, session: Any = None
) -> bool:
    """Insert the whole run (in ``session``'s transaction, else a session of its own); False
    when a run with its id exists (a concurrent write)."""
    from mlflow.store.tracking.dbmodels.models import (
        SqlLatestMetric,
        SqlMetric,
        SqlParam,
        SqlTag,
    )
    from mlflow.utils.name_utils import _generate_random_name
    from mlflow.utils.uri import append_to_uri_path

    assert req.new_run_id is not None and req.experiment_id is not None
    run_id = req.new_run_id
    artifact_uri = append_to_uri_path(location, run_id, ARTIFACTS_FOLDER)
    if req.artifacts:  # first: a run row never exists without its artifacts
        write_texts(artifact_uri, req.artifacts)
    tags = dict(req.tags)
    name = tags.setdefault(MLFLOW_RUN_NAME, _generate_random_name())
    run = {
        "run_uuid": run_id, "name": name, "artifact_uri": artifact_uri,
        "experiment_id": int(req.experiment_id), "source_type": "UNKNOWN", "source_name": "",
        "entry_point_name": "", "user_id": req.user_id, "status": req.status or "RUNNING",
        "start_time": req.start_time, "end_time": req.end_time if req.status else None,
        "deleted_time": None, "source_version": "", "lifecycle_stage": "active",
    }  # fmt: skip
    metrics, latest = _metric_rows(req, run_id)
    children: list[tuple[Any, list[dict[str, Any]]]] = [
        (SqlTag, [{"key": k, "value": v, "run_uuid": run_id} for k, v in tags.items()]),
        (SqlParam, [{"key": k, "value": v, "run_uuid": run_id} for k, v in req.params.items()]),
        (SqlMetric, metrics),
        (SqlLatestMetric, latest),
    ]
    if session is None:
        with store.ManagedSessionMaker(read_only=False) as own:
            return _insert(own, run, children, run_id)
    return _insert(session, run, children, run_id)


def _insert(session: Any, run: dict[str, Any], children: list[Any], run_id: str) -> bool:
    import sqlalchemy
    from mlflow.store.tracking.dbmodels.models import SqlRun

    try:
        session.execute(sqlalchemy.insert(SqlRun.__table__), [run])
        for model, rows in children:
            if rows:
                session.execute(sqlalchemy.insert(model.__table__), rows)
        session.commit()
    except sqlalchemy.exc.IntegrityError:
        session.rollback()  # lost to a concurrent insert of the same run?
        if session.query(SqlRun.run_uuid).filter(SqlRun.run_uuid == run_id).scalar():
            return False
        raise
    return True


def _update_in_one_transaction(store: Any, req: WriteRequest) -> dict[str, Any] | None:
    """An existing run's params, tags, metrics and termination (the parent's end) in one
    transaction: the rows ``log_batch`` and ``update_run_info`` would write. None, having
    written nothing, for what MLflow's calls must answer or do themselves: no such run or not
    an active one, a param whose value would change, a run name, artifacts."""
    import sqlalchemy
    from mlflow.store.tracking.dbmodels.models import (
        SqlLatestMetric,
        SqlMetric,
        SqlParam,
        SqlRun,
        SqlTag,
    )

    assert req.run_id is not None
    run_id = req.run_id
    if req.artifacts or MLFLOW_RUN_NAME in req.tags:
        return None
    metrics, latest = _metric_rows(req, run_id)
    keys = sorted({row["key"] for row in metrics})
    with store.ManagedSessionMaker(read_only=False) as session:
        stage = session.query(SqlRun.lifecycle_stage).filter(SqlRun.run_uuid == run_id).scalar()
        if stage != "active":
            return None
        of_run = (SqlParam.run_uuid == run_id, SqlParam.key.in_(list(req.params)))
        params = dict(session.query(SqlParam.key, SqlParam.value).filter(*of_run).all())
        if any(params[k] != v for k, v in req.params.items() if k in params):
            return None
        tagged = {k for (k,) in session.query(SqlTag.key).filter(
            SqlTag.run_uuid == run_id, SqlTag.key.in_(list(req.tags)))}  # fmt: skip
        for key in tagged:
            session.execute(
                sqlalchemy.update(SqlTag.__table__)
                .where(SqlTag.run_uuid == run_id, SqlTag.key == key)
                .values(value=req.tags[key])
            )
        logged = set(session.query(
            SqlMetric.key, SqlMetric.timestamp, SqlMetric.step, SqlMetric.value, SqlMetric.is_nan
        ).filter(SqlMetric.run_uuid == run_id, SqlMetric.key.in_(keys)))  # fmt: skip
        current = {m.key: m for m in session.query(SqlLatestMetric).filter(
            SqlLatestMetric.run_uuid == run_id, SqlLatestMetric.key.in_(keys)
        ).order_by(SqlLatestMetric.key).with_for_update()}  # fmt: skip
        inserts: list[tuple[Any, list[dict[str, Any]]]] = [
            (SqlParam, [{"key": k, "value": v, "run_uuid": run_id}
                        for k, v in req.params.items() if k not in params]),
            (SqlTag, [{"key": k, "value": v, "run_uuid": run_id}
                      for k, v in req.tags.items() if k not in tagged]),
            (SqlMetric, [m for m in metrics if (m["key"], m["timestamp"], m["step"], m["value"],
                                                m["is_nan"]) not in logged]),
            (SqlLatestMetric, [m for m in latest if m["key"] not in current]),
        ]  # fmt: skip
        for model, rows in inserts:
            if rows:
                session.execute(sqlalchemy.insert(model.__table__), rows)
        for row in latest:
            old = current.get(row["key"])
            if old is not None and (row["step"], row["timestamp"], row["value"]) > (
                old.step, old.timestamp, old.value
            ):  # fmt: skip
                old.value, old.step, old.timestamp = row["value"], row["step"], row["timestamp"]
                old.is_nan = row["is_nan"]
        if req.status is not None:
            ended = {"end_time": req.end_time} if req.end_time is not None else {}
            session.execute(
                sqlalchemy.update(SqlRun.__table__)
                .where(SqlRun.run_uuid == run_id)
                .values(status=req.status, **ended)
            )
    return _answer(run_id, created=False)


def _write_with_store_calls(store: Any, req: WriteRequest) -> dict[str, Any]:
    from mlflow.entities import RunStatus

    metrics, params, tags = entities(req)
    created = False
    run: Any = None  # the run's entity, when read or created here
    if req.run_id is not None:
        if req.artifacts or not (metrics or params or tags or req.status):
            run = store.get_run(req.run_id)  # its artifact URI; else log_batch checks the run
            if req.artifacts and not served(run.info.artifact_uri):
                raise NotServed("the run's artifacts are not served by this server")
        batch_tags = tags
    else:
        assert req.experiment_id is not None
        experiment = store.get_experiment(req.experiment_id)
        if experiment.lifecycle_stage != "active":
            raise BadInput("the experiment is deleted")
        if req.artifacts and not served(experiment.artifact_location):
            raise NotServed("the experiment's artifacts are not served by this server")
        run = _found_by_tag(store, req) if req.find_by_tag else None
        if run is not None and _terminated(run.info.status):
            return _answer(run.info.run_id, created=False, written=False)
        if run is None:
            run = store.create_run(req.experiment_id, req.user_id, req.start_time, tags, None)
            created = True
        batch_tags = []  # a new run got them at creation; a found one has them
    run_id = req.run_id or run.info.run_id
    if metrics or params or batch_tags:
        store.log_batch(run_id, metrics, params, batch_tags)
    if req.artifacts:
        write_texts(run.info.artifact_uri, req.artifacts)
    if req.status is not None:
        store.update_run_info(run_id, RunStatus.from_string(req.status), req.end_time, None)
    return _answer(run_id, created=created)
