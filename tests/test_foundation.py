"""The service skeleton: health, info, problem bodies, limits, request ids, the compute queue."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import httpx
import pytest
from fastapi import Request
from fastapi.testclient import TestClient
from pydantic import BaseModel

from labcrunch_service.app import create_app
from labcrunch_service.compute import Runner
from labcrunch_service.errors import ComputeTimeout
from labcrunch_service.http.context import request_id_var
from labcrunch_service.logs import JsonFormatter
from labcrunch_service.settings import Limits, Settings
from tests.conftest import assert_problem, wait_ready
from tests.helpers import tasks


class Echo(BaseModel):
    n: int


def make_app(**overrides) -> object:
    """An app with extra test-only routes: a slow job, a validated body, a crash."""
    limits = overrides.pop("limits", Limits())
    app = create_app(Settings(warmup=False, load_tensorflow=False, limits=limits, **overrides))

    async def slow(request: Request, seconds: float = 0.5) -> dict:
        timed = await request.app.state.runner.run(tasks.SLEEP, seconds)
        return {"elapsed_ms": timed.elapsed_ms}

    async def echo(body: Echo) -> dict:
        return {"n": body.n}

    async def crash() -> dict:
        raise RuntimeError("secret internal detail")

    async def raw(request: Request) -> dict:
        body = await request.body()
        request.app.state.raw_bodies.append(body)
        return {"bytes": len(body)}

    app.state.raw_bodies = []
    app.add_api_route("/v1/test/slow", slow, methods=["POST"])
    app.add_api_route("/v1/test/raw", raw, methods=["POST"])
    app.add_api_route("/v1/test/echo", echo, methods=["POST"])
    app.add_api_route("/v1/test/crash", crash, methods=["GET"])
    return app


@pytest.fixture(scope="module")
def test_api():
    with TestClient(make_app(limits=Limits(max_body_bytes=1000)), raise_server_exceptions=False) as c:
        wait_ready(c)
        yield c


def test_livez_and_readyz(api):
    assert api.get("/livez").json() == {"status": "ok"}
    assert api.get("/readyz").status_code == 200


def test_readyz_is_503_until_warmup_done():
    app = create_app(Settings(warmup=False, load_tensorflow=False))
    with TestClient(app) as client:
        app.state.ready.clear()  # as if warm-up were still running
        body = assert_problem(client.get("/readyz"), 503)
        assert body["title"] == "Not ready"
        app.state.ready.set()
        assert client.get("/readyz").status_code == 200


def test_info_lists_backends_devices_and_every_limit(api, settings):
    info = api.get("/v1/info").json()
    assert info["service"] == "labcrunch" and info["version"]
    jax_info = info["backends"]["jax"]
    assert jax_info["available"] is True and jax_info["x64"] is True and jax_info["devices"]
    tf = info["backends"]["tensorflow"]
    assert set(tf) >= {"available", "version"}
    assert info["limits"] == settings.limits.model_dump()
    assert info["compute"]["max_concurrent_jobs"] == settings.max_concurrent_jobs


def test_info_says_when_tensorflow_is_absent(monkeypatch):
    from labcrunch_service import backends

    monkeypatch.setattr(backends, "_tf", None)
    monkeypatch.setattr(backends, "_tf_error", "ModuleNotFoundError: No module named 'tensorflow'")
    described = backends.describe()["tensorflow"]
    assert described["available"] is False and "tensorflow" in described["reason"]
    from labcrunch_service.errors import BackendUnavailable

    with pytest.raises(BackendUnavailable):
        backends.tensorflow()


def test_openapi_and_docs(api):
    spec = api.get("/openapi.json").json()
    assert spec["info"]["title"] == "labcrunch"
    assert "Problem" in spec["components"]["schemas"]
    assert api.get("/docs").status_code == 200
    for path, ops in spec["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, op in ops.items():
            declared = {int(code) for code in op["responses"] if code.isdigit()}
            assert declared & {413, 422, 429, 500}, f"{method.upper()} {path} declares no errors"


def test_unknown_route_is_a_problem(api):
    body = assert_problem(api.get("/v1/nope"), 404)
    assert "/v1/nope" in body["detail"] and body["request_id"]


def test_wrong_method_is_a_problem(api):
    assert_problem(api.delete("/v1/info"), 405)


def test_validation_error_lists_fields(test_api):
    body = assert_problem(test_api.post("/v1/test/echo", json={"n": "many"}), 422)
    assert body["errors"][0]["loc"] == ["body", "n"]
    assert "n" in body["detail"]
    body = assert_problem(test_api.post("/v1/test/echo", content=b"{not json",
                                        headers={"content-type": "application/json"}), 422)


class JsonLines(logging.Handler):
    """Formats each record as it is emitted (when the request id is in context)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


def test_internal_error_hides_the_traceback(test_api, caplog):
    lines = JsonLines()
    logging.getLogger().addHandler(lines)
    try:
        with caplog.at_level(logging.ERROR):
            response = test_api.get("/v1/test/crash", headers={"X-Request-ID": "crash-1"})
    finally:
        logging.getLogger().removeHandler(lines)
    body = assert_problem(response, 500)
    assert "secret" not in json.dumps(body) and "Traceback" not in json.dumps(body)
    assert any("secret internal detail" in (r.exc_text or str(r.exc_info)) for r in caplog.records)
    # "logged under this request id": the answer and the traceback's log line carry the same id.
    assert response.headers["x-request-id"] == "crash-1" and body["request_id"] == "crash-1"
    traced = [line for line in lines.lines if "secret internal detail" in line.get("exc", "")]
    assert traced and all(line["request_id"] == "crash-1" for line in traced)
    assert test_api.get("/livez").status_code == 200  # still serving


def test_body_over_the_limit_is_413_before_parsing(test_api):
    body = assert_problem(test_api.post("/v1/test/echo", content=b"x" * 2000,
                                        headers={"content-type": "application/json"}), 413)
    assert body["limit"] == "max_body_bytes" and body["maximum"] == 1000
    assert body["instance"] == "/v1/test/echo" and body["request_id"]


def test_chunked_body_over_the_limit_is_413(test_api):
    def chunks():
        for _ in range(30):
            yield b"x" * 100

    response = test_api.post("/v1/test/echo", content=chunks(), headers={"content-type": "application/json"})
    assert_problem(response, 413)


def test_no_route_sees_a_truncated_body(test_api):
    """A valid JSON document padded past the limit: the route must not run on a prefix of it."""
    def chunks():
        yield b'{"n": 1}' + b" " * 92
        for _ in range(30):
            yield b" " * 100

    test_api.app.state.raw_bodies.clear()
    body = assert_problem(test_api.post("/v1/test/raw", content=chunks()), 413)
    assert body["limit"] == "max_body_bytes" and body["request_id"]
    assert test_api.app.state.raw_bodies == []
    assert test_api.post("/v1/test/raw", content=b"small").json() == {"bytes": 5}


def test_request_id_is_echoed_or_generated(api):
    given = api.get("/livez", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = api.get("/livez")
    assert len(made.headers["x-request-id"]) == 32
    hostile = api.get("/livez", headers={"X-Request-ID": "x" * 500})
    assert hostile.headers["x-request-id"] != "x" * 500
    body = api.get("/v1/missing", headers={"X-Request-ID": "trace-7"}).json()
    assert body["request_id"] == "trace-7"


def test_request_id_with_a_trailing_newline_is_replaced():
    """`$` matches before a final newline; the id must match the whole value."""
    from labcrunch_service.http.middleware import RequestContextMiddleware

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"x-request-id", b"abc\n")]}
    asyncio.run(RequestContextMiddleware(app)(scope, receive, send))
    echoed = dict(sent[0]["headers"])[b"x-request-id"]
    assert b"\n" not in echoed and len(echoed) == 32


def test_log_lines_are_json_with_the_request_id():
    record = logging.LogRecord("service", logging.INFO, __file__, 1, "hello %s", ("there",), None)
    token = request_id_var.set("rid-42")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert line["msg"] == "hello there" and line["request_id"] == "rid-42" and line["level"] == "INFO"


def test_compute_runs_off_the_event_loop_and_reports_time():
    app = make_app()
    with TestClient(app) as client:
        out = client.post("/v1/test/slow", params={"seconds": 0.05}).json()
    assert out["elapsed_ms"] >= 45


def test_busy_queue_answers_429_with_retry_after():
    """One slot, no queue: of three concurrent slow jobs, one runs and two are refused."""
    app = make_app(max_concurrent_jobs=1, max_queued_jobs=0, retry_after_seconds=3)

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await asyncio.gather(
                *[client.post("/v1/test/slow", params={"seconds": 0.5}) for _ in range(3)]
            )

    responses = asyncio.run(scenario())
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 429, 429]
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.headers["retry-after"] == "3"
    body = assert_problem(refused, 429)
    assert "compute" in body["detail"]


def test_wall_time_limit_answers_503():
    app = make_app(limits=Limits(max_wall_seconds=0.2))
    with TestClient(app) as client:
        body = assert_problem(client.post("/v1/test/slow", params={"seconds": 0.6}), 503)
    assert "max_wall_seconds" in body["detail"]


def test_check_deadline_stops_cooperative_loops():
    runner = Runner(1, 0, wall_seconds=0.1)
    with pytest.raises(ComputeTimeout):
        asyncio.run(runner.run(tasks.SPIN))
    runner.shutdown()


def test_a_job_still_queued_at_its_deadline_never_runs():
    runner = Runner(1, 1, wall_seconds=0.3)
    tasks.RECORDED.clear()

    async def scenario():
        first = asyncio.ensure_future(runner.run(tasks.SLEEP, 0.6))  # ignores the deadline
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(runner.run(tasks.RECORD, "queued"))
        return await asyncio.gather(first, queued, return_exceptions=True)

    outcomes = asyncio.run(scenario())
    assert all(isinstance(o, ComputeTimeout) for o in outcomes), outcomes
    time.sleep(0.7)
    assert tasks.RECORDED == []  # dropped with its 503, not run afterwards for nobody
    assert runner.in_flight == 0
    runner.shutdown()


def test_wall_time_counts_from_admission():
    """A job that waited in the queue stops (check_deadline) when its request answers 503, not a
    whole wall time after it started."""
    runner = Runner(1, 1, wall_seconds=1.0)
    tasks.RAN_FOR.clear()

    async def scenario():
        first = asyncio.ensure_future(runner.run(tasks.SLEEP, 0.7))
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(runner.run(tasks.SPIN_AND_TIME))
        return await asyncio.gather(first, queued, return_exceptions=True)

    outcomes = asyncio.run(scenario())
    assert not isinstance(outcomes[0], Exception) and isinstance(outcomes[1], ComputeTimeout)
    time.sleep(0.2)
    assert tasks.RAN_FOR and tasks.RAN_FOR[0] < 0.8, tasks.RAN_FOR  # ~0.35 s: what was left of its wall time
    runner.shutdown()


def test_api_keys_guard_v1_but_not_health():
    app = create_app(Settings(warmup=False, load_tensorflow=False, api_keys=["s3cret"]))
    with TestClient(app) as client:
        assert client.get("/livez").status_code == 200
        body = assert_problem(client.get("/v1/info"), 401)
        assert "API key" in body["detail"]
        assert_problem(client.get("/v1/info", headers={"Authorization": "Bearer wrong"}), 401)
        assert client.get("/v1/info", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.get("/v1/info", headers={"X-API-Key": "s3cret"}).status_code == 200
        # Non-ASCII bytes in a key header are a wrong key (401), not a crash (compare_digest).
        assert_problem(client.get("/v1/info", headers={"X-API-Key": "caf\xe9".encode("latin-1")}), 401)
        assert_problem(client.get("/v1/info", headers={"Authorization": b"Bearer \xe9"}), 401)


def test_api_keys_may_be_non_ascii():
    app = create_app(Settings(warmup=False, load_tensorflow=False, api_keys=["clé"]))
    with TestClient(app) as client:
        assert client.get("/v1/info", headers={"X-API-Key": "clé".encode()}).status_code == 200
        assert_problem(client.get("/v1/info", headers={"X-API-Key": "cle"}), 401)


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("LABCRUNCH_MAX_QUEUED_JOBS", "7")
    monkeypatch.setenv("LABCRUNCH_LIMITS__MAX_POINTS", "123")
    monkeypatch.setenv("LABCRUNCH_API_KEYS", '["a", "b"]')
    s = Settings()
    assert s.max_queued_jobs == 7 and s.limits.max_points == 123 and s.api_keys == ["a", "b"]


@pytest.mark.parametrize(("argv", "env", "expected"), [
    ([], {}, ("127.0.0.1", 8000)),
    ([], {"LABCRUNCH_HOST": "10.0.0.5", "LABCRUNCH_PORT": "9001", "HOST": "0.0.0.0"},
     ("10.0.0.5", 9001)),
    (["--host", "::1", "--port", "0"], {"LABCRUNCH_PORT": "9001"}, ("::1", 0)),
])
def test_serve_binds_where_asked(monkeypatch, argv, env, expected):
    """--host/--port, else LABCRUNCH_HOST/PORT, else loopback:8000; a generic $HOST is ignored."""
    import uvicorn

    from labcrunch_service import cli

    for name in ("LABCRUNCH_HOST", "LABCRUNCH_PORT", "HOST", "PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("labcrunch_service.logs.configure_logging", lambda *a, **k: None)
    bound = []
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kw: bound.append((host, port)))
    cli.main(["serve", *argv])
    assert bound == [expected]


@pytest.mark.parametrize("env", [{"LABCRUNCH_MAX_CONCURRENT_JOBS": "0"},
                                 {"LABCRUNCH_LIMITS__MAX_WALL_SECONDS": "-1"}])
def test_unusable_settings_fail_at_start_up(monkeypatch, env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError):
        Settings()


def test_gpu_etiquette_is_set_before_frameworks_start():
    import os

    assert os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"


def test_lru_cache_builds_once_and_evicts_the_least_recently_used():
    from labcrunch_service.cache import LruCache

    cache: LruCache[str] = LruCache(2)
    builds: list[str] = []

    def build(name: str):
        return lambda: builds.append(name) or name.upper()

    assert cache.get_or_build("a", build("a")) == "A"
    assert cache.get_or_build("a", build("a")) == "A" and builds == ["a"]
    cache.get_or_build("b", build("b"))
    cache.get("a")                       # a is now the most recent
    cache.get_or_build("c", build("c"))  # evicts b
    assert cache.get("b") is None and cache.get("a") == "A" and len(cache) == 2
    assert cache.put("a", "other") == "other" and cache.get("a") == "other"
    assert (cache.hits, cache.misses) == (1, 3)


def test_caches_made_with_a_setting_are_sized_by_it():
    from labcrunch_service.cache import LruCache, configure

    cache: LruCache[int] = LruCache(8, name="test", setting="compile_cache_size")
    for i in range(8):
        cache.put(i, i)
    try:
        configure(Settings(compile_cache_size=3, warmup=False))
        assert cache.maxsize == 3 and len(cache) == 3 and cache.get(7) == 7 and cache.get(0) is None
    finally:
        configure(Settings(warmup=False))  # every other cache back to its default size
