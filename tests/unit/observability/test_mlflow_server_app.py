"""The ``technoshare`` MLflow server app's batch endpoint (``POST /api/2.0/technoshare/runs/
write``, observability/mlflow_server_app.py) against a real ``mlflow server --app-name
technoshare`` with basic auth on (``TECHNOSHARE_MLFLOW_AUTH=basic``, as compose runs it), one
server for the module:
- a stage run and a parent's end written through it are the runs the standard calls write
  (run info, tags, metric history, params, artifacts listed and byte for byte), in 1 request
  instead of 5 and 2;
- a retried or replayed write finds its run by its record id, never makes a second one: a new
  run takes the id the client chose (``new_run_id``), so concurrent writes of one run make one
  run, and an id of another experiment's run is refused;
- bad input is a 4xx that names the problem, echoes no value and writes nothing;
- the endpoint is behind basic auth: no or wrong credentials 401, a user without EDIT on the
  experiment 403, with EDIT allowed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest

from observability.mlflow_batch import ENDPOINT, MARKER_HEADER, MAX_ARTIFACT_BYTES, MAX_BODY_BYTES
from tests.support.mlflow_server import MlflowServer

pytestmark = pytest.mark.mlflow_server

ADMIN = ("admin", "admin-password-0123456789")
SECRET = "sk-live-0123456789abcdefSECRET"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    pytest.importorskip("flask_wtf", reason="mlflow[auth] (Flask-WTF) runs MLflow's basic auth")
    server = MlflowServer(
        tmp_path_factory.mktemp("mlflow-app"), app_name="technoshare", admin=ADMIN
    )
    yield server.start()
    server.stop()


def call(server: MlflowServer, path: str, body: Any, auth: Any = ADMIN) -> httpx.Response:
    return httpx.post(server.url + path, json=body, auth=auth, timeout=30)


def write(server: MlflowServer, body: dict[str, Any], auth: Any = ADMIN) -> httpx.Response:
    return call(server, ENDPOINT, {"protocol": 1, **body}, auth)


@pytest.fixture(scope="module")
def experiment(server: MlflowServer) -> str:
    answer = call(server, "/api/2.0/mlflow/experiments/create", {"name": "technoshare_commentator"})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["experiment_id"])


@pytest.fixture(scope="module", autouse=True)
def as_admin() -> Iterator[None]:
    """MLflow clients of this module (the stores', the checks') log in as the admin."""
    patch = pytest.MonkeyPatch()
    patch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
    patch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
    yield
    patch.undo()


@pytest.fixture(scope="module")
def stores(
    server: MlflowServer, experiment: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Any, Any]:
    """Two stores on the one server: by 127.0.0.1 through the endpoint, by localhost marked as
    a server without it (the standard calls, as against a plain ``mlflow server``)."""
    from observability import mlflow_batch
    from observability.mlflow_store import MlflowStore
    from pipeline.settings import Settings

    made = []
    for url in (server.url, server.url.replace("127.0.0.1", "localhost")):
        settings = Settings(
            mlflow_tracking_uri=url,
            state_dir=tmp_path_factory.mktemp("state"),
            mlflow_enable_tracing=False,
        )
        made.append(MlflowStore(settings))
    batch, standard = made
    mlflow_batch.use_standard_calls(standard)
    assert mlflow_batch.usable(batch) and not mlflow_batch.usable(standard)
    assert batch.experiment_id() == standard.experiment_id() == experiment
    return batch, standard


def job(job_id: str) -> Any:
    from tests.support import obs_jobs

    return obs_jobs.make_job(job_id, "https://arxiv.org/abs/2401.00001")


def begin(store: Any, job_id: str) -> tuple[Any, str]:
    """A parent run (the standard ``runs/create``, as ``begin_job`` makes it)."""
    from observability.ledger import MemoryLedger
    from observability.mlflow_parent import apply_begin, parent_tags
    from observability.records import BeginRecord, new_record_id

    ledger = MemoryLedger()
    run_key = new_record_id()  # 32 hex, like an attempt's trace id
    tags = parent_tags(job(job_id), run_key, None)
    record = BeginRecord(run_key=run_key, job=job(job_id), started_at=time.time(), tags=tags)
    return ledger, apply_begin(store, ledger, record, replay=False)


def stage_record(parent: str, status: Literal["FINISHED", "FAILED"] = "FINISHED") -> Any:
    from observability.records import StageRecord

    now = time.time()
    return StageRecord(
        run_key="0" * 32,
        job=job("jsame00001"),
        parent_run_id=parent,
        stage="fetch_evidence",
        started_at=now - 1.25,
        ended_at=now,
        status=status,
        metrics={"snippet_count": 3.0, "evidence_chars": 1234.0, "cost_usd": 0.0015},
        params={"adapter": "ArxivAdapter"},
        tags={"read": "full_text", "coverage": "full"},
        artifacts={
            "evidence.json": json.dumps({"snippets": ["é", "b"], "n": 1}, indent=2),
            "notes/extra.json": '{"more": true}\n',
        },
    )


def end_record(parent: str, run_key: str) -> Any:
    from observability.records import EndRecord

    now = time.time()
    return EndRecord(
        run_key=run_key,
        job=job("jsame00001"),
        parent_run_id=parent,
        started_at=now - 5,
        ended_at=now,
        status="FAILED",
        metrics={"total_cost_usd": 0.003, "llm_calls": 2.0},
        params={"llm_model": "openai/gpt-4o-mini"},
        tags={"outcome": "error", "reply_ts": "1700000000.000200"},
    )


def artifacts(client: Any, run_id: str, tmp: Path, path: str | None = None) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for info in client.list_artifacts(run_id, path):
        if info.is_dir:
            out.update(artifacts(client, run_id, tmp, info.path))
        else:
            local = client.download_artifacts(run_id, info.path, str(tmp))
            out[info.path] = Path(local).read_bytes()
    return out


def view(client: Any, run_id: str, tmp: Path) -> dict[str, Any]:
    """Everything a run holds, but its own id and the keys that name its record."""
    run = client.get_run(run_id)
    info = run.info
    tags = dict(run.data.tags)
    for key in ("ts_record_id", "ts_run_key"):
        tags.pop(key, None)
    return {
        "info": {
            "status": info.status,
            "start_time": info.start_time,
            "end_time": info.end_time,
            "user_id": info.user_id,
            "run_name": info.run_name,
            "experiment_id": info.experiment_id,
            "lifecycle_stage": info.lifecycle_stage,
            "artifact_uri": info.artifact_uri.replace(run_id, "<run>"),
        },
        "tags": tags,
        "metrics": {
            key: [(m.value, m.timestamp, m.step) for m in client.get_metric_history(run_id, key)]
            for key in run.data.metrics
        },
        "params": run.data.params,
        "artifacts": artifacts(client, run_id, tmp / run_id),
    }


@pytest.mark.parametrize("status", ["FINISHED", "FAILED"])
def test_a_stage_run_through_the_endpoint_is_the_standard_one_in_one_request(
    server: MlflowServer,
    stores: tuple[Any, Any],
    tmp_path: Path,
    status: Literal["FINISHED", "FAILED"],
) -> None:
    from observability.mlflow_writes import apply_stage
    from observability.records import new_record_id

    batch, standard = stores
    ledger, parent = begin(batch, f"jstage{status}")
    record = stage_record(parent, status)
    twin = record.model_copy(update={"record_id": new_record_id()})  # same stage, other record

    before = server.requests()
    through_endpoint = apply_stage(batch, ledger, record, replay=False)
    assert server.requests() - before == {("POST", ENDPOINT): 1}
    before = server.requests()
    the_standard_way = apply_stage(standard, ledger, twin, replay=False)
    assert sum((server.requests() - before).values()) == 5  # create, log-batch, 2 PUTs, update

    client = batch.client()
    one = view(client, through_endpoint, tmp_path)
    other = view(client, the_standard_way, tmp_path)
    assert one == other
    assert one["info"]["status"] == status
    assert one["tags"]["mlflow.parentRunId"] == parent
    assert one["tags"]["mlflow.runName"] == one["info"]["run_name"] == "fetch_evidence"
    assert one["info"]["start_time"] == int(record.started_at * 1000)
    assert one["info"]["end_time"] == int(record.ended_at * 1000)
    assert one["metrics"]["cost_usd"] == [(0.0015, int(record.ended_at * 1000), 0)]
    assert set(one["artifacts"]) == {"evidence.json", "notes/extra.json"}
    assert json.loads(one["artifacts"]["evidence.json"]) == {"snippets": ["é", "b"], "n": 1}
    runs = client.get_run(through_endpoint), client.get_run(the_standard_way)
    assert [r.data.tags["ts_record_id"] for r in runs] == [record.record_id, twin.record_id]


def test_a_parents_end_through_the_endpoint_is_the_standard_one_in_one_request(
    server: MlflowServer, stores: tuple[Any, Any], tmp_path: Path
) -> None:
    from observability.mlflow_writes import apply_end

    batch, standard = stores
    ends = {}
    same = end_record("", "1" * 32)
    for name, store in (("batch", batch), ("standard", standard)):
        ledger, parent = begin(store, "jsame00001")
        record = same.model_copy(update={"parent_run_id": parent})
        before = server.requests()
        assert apply_end(store, ledger, record, replay=False) == parent
        ends[name] = (parent, sum((server.requests() - before).values()))
    assert ends["batch"][1] == 1 and ends["standard"][1] == 2  # log-batch + update

    client = batch.client()
    one, other = (view(client, ends[k][0], tmp_path) for k in ("batch", "standard"))
    for each in (one, other):  # begun one after the other, ended the same
        each["info"].pop("start_time")
    assert one == other
    assert one["info"]["status"] == "FAILED" and one["tags"]["outcome"] == "error"
    assert one["metrics"]["llm_calls"][0][0] == 2.0 and one["params"]["llm_model"]


def test_a_retried_or_replayed_stage_write_finds_its_run(stores: tuple[Any, Any]) -> None:
    from observability.mlflow_writes import apply_stage, stage_tags

    batch, _ = stores
    client = batch.client()
    ledger, parent = begin(batch, "jreplay0001")
    record = stage_record(parent)
    first = apply_stage(batch, ledger, record, replay=False)
    assert apply_stage(batch, ledger, record, replay=False) == first  # a retried live write
    assert apply_stage(batch, ledger, record, replay=True) == first  # a replay of it
    found = client.search_runs([batch.experiment_id()], f"tags.ts_record_id = '{record.record_id}'")
    assert [r.info.run_id for r in found] == [first]

    # created before an outage cut the write short: the replay finishes that run
    cut = stage_record(parent)
    left = client.create_run(
        batch.experiment_id(), int(cut.started_at * 1000), stage_tags(cut, parent)
    )
    assert apply_stage(batch, ledger, cut, replay=True) == left.info.run_id
    run = client.get_run(left.info.run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["snippet_count"] == 3.0
    assert {a.path for a in client.list_artifacts(left.info.run_id)} == {"evidence.json", "notes"}


def stage_body(experiment: str, run_id: str) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return {
        "experiment_id": experiment, "new_run_id": run_id, "start_time": now - 900,
        "tags": {"ts_record_id": run_id, "stage": "stage_a", "mlflow.runName": "stage_a"},
        "metrics": [{"key": "latency_ms", "value": 900.0, "timestamp": now, "step": 0},
                    {"key": "latency_ms", "value": 900.0, "timestamp": now, "step": 0},
                    {"key": "score", "value": float("nan"), "timestamp": now, "step": 0}],
        "params": {"model": "stub"}, "artifacts": {"facts.json": '{"facts": []}'},
        "status": "FINISHED", "end_time": now,
    }  # fmt: skip


def test_a_new_run_takes_the_chosen_id_and_concurrent_writes_of_it_make_one_run(
    server: MlflowServer, experiment: str, tmp_path: Path
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from mlflow import MlflowClient

    run_id = "c0ffee" + "0" * 25 + "1"
    body = json.dumps({"protocol": 1, **stage_body(experiment, run_id)})  # NaN as Python sends it

    def send(_: int) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        return httpx.post(server.url + ENDPOINT, content=body, headers=headers, auth=ADMIN)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(8)))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert {a.json()["run_id"] for a in answers} == {run_id}
    assert sum(a.json()["created"] for a in answers) == 1  # the others found it written
    client = MlflowClient(server.url)
    found = client.search_runs([experiment], f"tags.ts_record_id = '{run_id}'")
    assert [r.info.run_id for r in found] == [run_id]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "stage_a"
    assert run.data.params == {"model": "stub"} and run.data.metrics["latency_ms"] == 900.0
    assert [m.value for m in client.get_metric_history(run_id, "latency_ms")] == [900.0]
    assert str(client.get_metric_history(run_id, "score")[0].value) == "nan"
    assert artifacts(client, run_id, tmp_path) == {"facts.json": b'{"facts": []}'}


def test_a_chosen_id_of_another_experiments_run_is_refused(
    server: MlflowServer, experiment: str
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(server.url)
    other = client.create_experiment("another-experiment")
    theirs = client.create_run(other).info.run_id
    answer = write(server, {**stage_body(experiment, theirs), "metrics": []})  # JSON: no NaN
    assert answer.status_code == 409 and "another experiment" in answer.json()["message"]
    run = client.get_run(theirs)
    assert run.info.status == "RUNNING" and not run.data.metrics and not run.data.params


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _base(experiment: str) -> dict[str, Any]:
    return {"experiment_id": experiment, "tags": {"k": SECRET}, "status": "FINISHED"}


BAD: dict[str, Any] = {
    "malformed JSON": b'{"protocol": 1, "experiment_id": ',
    "nested past the parser's depth": b"[" * 100_000,
    "lone surrogate": b'{"protocol": 1, "experiment_id": "1", "tags": {"k": "\\ud800"}}',
    "not UTF-8": b'{"protocol": 1, "experiment_id": "\xff"}',
    "not an object": [1, 2],
    "no protocol": {"experiment_id": "1"},
    "unknown field": {"protocol": 1, "experiment_id": "1", "run_name": "x"},
    "run and experiment": {"protocol": 1, "experiment_id": "1", "run_id": "a" * 32},
    "neither run nor experiment": {"protocol": 1, "tags": {}},
    "experiment id not a string": {"protocol": 1, "experiment_id": 1},
    "experiment id not digits": {"protocol": 1, "experiment_id": "1 OR 1=1"},
    "run id form": {"protocol": 1, "run_id": "../../etc"},
    "tags not an object": {"tags": [["k", SECRET]]},
    "tag value not a string": {"tags": {"k": 5}},
    "metric value a string": {"metrics": [{"key": "m", "value": SECRET, "timestamp": 1}]},
    "metric value a bool": {"metrics": [{"key": "m", "value": True, "timestamp": 1}]},
    "metric without timestamp": {"metrics": [{"key": "m", "value": 1.0}]},
    "metric key MLflow refuses": {"metrics": [{"key": "bad key?!", "value": 1.0, "timestamp": 1}]},
    "negative start time": {"start_time": -5},
    "start time a string": {"start_time": "yesterday"},
    "status unknown": {"status": "DONE"},
    "end time without status": {"status": None, "end_time": 5},
    "find_by_tag not among tags": {"find_by_tag": "ts_record_id"},
    "new run id not hex": {"new_run_id": "Z" * 32},
    "new run id short": {"new_run_id": "abc"},
    "new run id with a run id": {"protocol": 1, "run_id": "a" * 32, "new_run_id": "b" * 32},
    "find_by_tag value unsafe": {"tags": {"k": "a' OR '1'='1"}, "find_by_tag": "k"},
    "too many metrics": {
        "metrics": [{"key": f"m{i}", "value": 1.0, "timestamp": 1} for i in range(1001)]
    },
    "too many params": {"params": {f"p{i}": "v" for i in range(101)}},
    "too many artifacts": {"artifacts": {f"a{i}.json": "{}" for i in range(17)}},
    "artifact too large": {"artifacts": {"big.json": "x" * (MAX_ARTIFACT_BYTES + 1)}},
    "artifact not text": {"artifacts": {"a.json": {"x": 1}}},
}
TRAVERSAL = [
    "../escape.json", "../../../../tmp/escape.json", "a/../../b.json", "/etc/passwd",
    "a\\..\\b.json", ".hidden", "a/./b.json", "a//b.json", "", "%2e%2e/x.json", "a/b/c/d/e.json",
    "x" * 201, "trailing/",
]  # fmt: skip


def bad_bodies(experiment: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, body in BAD.items():
        if isinstance(body, dict) and "protocol" not in body and name != "no protocol":
            body = {"protocol": 1, **_base(experiment), **body}
            body = {k: v for k, v in body.items() if v is not None}
        out[name] = body
    for name in TRAVERSAL:
        out[f"artifact name {name[:20]!r}"] = {
            "protocol": 1,
            **_base(experiment),
            "artifacts": {name: "{}"},
        }
    return out


def test_bad_input_is_a_4xx_that_names_the_problem_and_writes_nothing(
    server: MlflowServer, experiment: str
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=server.url)
    runs_before = len(client.search_runs([experiment]))
    files_before = files_under(server.artifacts)
    answers = {}
    for name, body in bad_bodies(experiment).items():
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        answers[name] = httpx.post(
            server.url + ENDPOINT,
            content=raw,
            headers={"Content-Type": "application/json"},
            auth=ADMIN,
            timeout=30,
        )
    oversized = b'{"protocol": 1, "pad": "' + b"x" * MAX_BODY_BYTES + b'"}'
    answers["body too large"] = httpx.post(
        server.url + ENDPOINT, content=oversized, auth=ADMIN, timeout=60
    )
    answers["no such experiment"] = write(server, {"experiment_id": "987654"})
    answers["no such run"] = write(server, {"run_id": "0" * 32, "status": "FINISHED"})

    wrong = {n: (a.status_code, a.text[:200]) for n, a in answers.items()
             if not 400 <= a.status_code < 500}  # fmt: skip
    assert wrong == {}
    for name, answer in answers.items():
        assert answer.headers.get(MARKER_HEADER) == "1", name
        assert answer.json()["error_code"] and answer.json()["message"], name
        assert SECRET not in answer.text, name  # a bad value is named, never echoed
    assert answers["body too large"].status_code == 413
    assert answers["artifact too large"].status_code == 413
    assert answers["no such run"].status_code == 404
    assert "not valid JSON" in answers["malformed JSON"].json()["message"]
    assert "artifact name" in answers["artifact name '../escape.json'"].json()["message"]
    assert len(client.search_runs([experiment])) == runs_before
    assert files_under(server.artifacts) == files_before
    assert not (server.root.parent / "escape.json").exists()


def admin_call(server: MlflowServer, path: str, body: dict[str, Any]) -> None:
    answer = call(server, path, body)
    assert answer.status_code == 200, answer.text


def test_under_basic_auth_only_a_user_who_may_edit_the_experiment_writes(
    server: MlflowServer, experiment: str
) -> None:
    from mlflow import MlflowClient

    users = {name: f"{name}-password-0123456789" for name in ("bob", "carol", "dave")}
    for name, password in users.items():
        admin_call(server, "/api/2.0/mlflow/users/create", {"username": name, "password": password})
    for name, permission in (("carol", "READ"), ("dave", "EDIT")):
        admin_call(
            server,
            "/api/3.0/mlflow/users/permissions/grant",
            {"username": name, "resource_type": "experiment", "resource_id": experiment,
             "permission": permission},
        )  # fmt: skip
    client = MlflowClient(tracking_uri=server.url)
    runs_before = len(client.search_runs([experiment]))
    existing = write(server, {"experiment_id": experiment}).json()["run_id"]
    create = {"experiment_id": experiment, "metrics": [], "status": "FINISHED"}
    finish = {"run_id": existing, "params": {"p": "v"}, "status": "FINISHED"}

    for auth in (None, ("bob", "not-bob-s-password"), ("nobody", "whatever-password")):
        answer = write(server, create, auth)
        assert answer.status_code == 401 and answer.headers.get(MARKER_HEADER) == "1", auth
    for name in ("bob", "carol"):  # no permission; READ only
        for body in (create, finish):
            answer = write(server, body, (name, users[name]))
            assert answer.status_code == 403, (name, body, answer.text)
    # a body that does not parse passes the permission check and is refused by the endpoint
    assert write(server, {"experiment_id": 5}, ("bob", users["bob"])).status_code == 400
    assert len(client.search_runs([experiment])) == runs_before + 1
    assert (
        client.get_run(existing).info.status == "RUNNING"
        and not client.get_run(existing).data.params
    )

    dave = ("dave", users["dave"])
    made = write(server, create, dave)
    assert made.status_code == 200, made.text
    assert write(server, finish, dave).status_code == 200
    assert client.get_run(existing).data.params == {"p": "v"}
    assert client.get_run(made.json()["run_id"]).info.status == "FINISHED"


def test_artifacts_the_server_does_not_serve_go_the_standard_way(
    server: MlflowServer, tmp_path: Path
) -> None:
    """An experiment whose artifacts live elsewhere (here a local directory): the endpoint
    answers FEATURE_DISABLED before writing anything, and the client switches that store to
    the standard calls (the run is there, its artifact where the experiment keeps them)."""
    from observability import mlflow_batch
    from observability.mlflow_store import MlflowStore
    from observability.mlflow_writes import apply_stage
    from pipeline.settings import Settings

    elsewhere = tmp_path / "elsewhere"
    made = call(
        server,
        "/api/2.0/mlflow/experiments/create",
        {"name": "elsewhere", "artifact_location": elsewhere.as_uri()},
    )
    exp = made.json()["experiment_id"]
    answer = write(server, {"experiment_id": exp, "artifacts": {"a.json": "{}"}})
    assert answer.status_code == 501 and answer.json()["error_code"] == "FEATURE_DISABLED"
    assert answer.headers.get(MARKER_HEADER) == "1"
    assert write(server, {"experiment_id": exp, "status": "FINISHED"}).status_code == 200

    store = MlflowStore(
        Settings(
            mlflow_tracking_uri=server.url + "/",  # another URI: its own fallback state
            mlflow_experiment="elsewhere",
            state_dir=tmp_path / "state",
            mlflow_enable_tracing=False,
        )
    )
    ledger, parent = begin(store, "jelsewhere1")
    before = server.requests()
    run_id = apply_stage(store, ledger, stage_record(parent), replay=False)
    made_requests = server.requests() - before
    assert (
        made_requests[("POST", ENDPOINT)] == 1
        and made_requests[("POST", "/api/2.0/mlflow/runs/create")] == 1
    )
    assert not mlflow_batch.usable(store)
    run = store.client().get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["snippet_count"] == 3.0
    assert (elsewhere / run_id / "artifacts" / "evidence.json").exists()


def test_a_failed_write_says_why_without_the_credentials(tmp_path: Path) -> None:
    """Nothing listens: the error (transient, so the record waits in the outbox) names neither
    the password in the environment nor one in the tracking URI."""
    from mlflow.exceptions import MlflowException

    from observability import mlflow_batch
    from observability.mlflow_store import MlflowStore
    from observability.mlflow_writes import is_permanent
    from pipeline.settings import Settings
    from tests.support.service import free_port

    uri = f"http://bob:{SECRET}@127.0.0.1:{free_port()}"
    store = MlflowStore(Settings(mlflow_tracking_uri=uri, state_dir=tmp_path))
    with pytest.raises(MlflowException) as caught:
        mlflow_batch.write_run(store, {"run_id": "a" * 32, "status": "FINISHED"})
    text = str(caught.value)
    assert "runs/write" in text and SECRET not in text and ADMIN[1] not in text
    assert caught.value.__suppress_context__ and not is_permanent(caught.value)
    assert mlflow_batch.usable(store)  # a server that did not answer is not one without it
