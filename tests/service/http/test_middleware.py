"""The request middleware: body size limit before parsing, request ids."""

from __future__ import annotations

import asyncio

import pytest

from bench.harness import server_timing
from tests.conftest import assert_problem
from tests.helpers import tasks


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


def test_server_timing_says_where_the_time_went(test_api):
    """A computation's answer: its task time (the body's elapsed_ms), the worker's round trip
    around it and the time until the answer started, nested in that order; /livez only the last."""
    response = test_api.post("/v1/test/slow", params={"seconds": 0.2})
    timing = server_timing(response)
    assert list(timing) == ["queue", "worker", "compute", "app"]
    assert timing["compute"] == pytest.approx(response.json()["elapsed_ms"], abs=1e-3)
    assert 200 <= timing["compute"] <= timing["worker"] <= timing["app"]
    assert 0 <= timing["queue"] <= timing["app"] - timing["worker"]
    assert list(server_timing(test_api.get("/livez"))) == ["app"]


def test_server_timing_counts_the_wait_for_a_worker(test_api):
    """Every worker busy for a second: the request's queue entry holds its wait."""
    scheduler = test_api.app.state.runner.scheduler
    scheduler.wait_idle()
    busy = [test_api.app.state.runner.submit(tasks.SLEEP, (1.0,), owner="busy")
            for _ in scheduler.workers]
    timing = server_timing(test_api.post("/v1/test/slow", params={"seconds": 0.01}))
    for job in busy:
        job.result(30)
    assert timing["queue"] >= 300 and timing["queue"] + timing["worker"] <= timing["app"]
