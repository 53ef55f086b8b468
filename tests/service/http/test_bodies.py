"""Request bodies: each route's body limit (413 naming it, before the body is read), and JSON
validated in one pass, off the event loop when large, on every route that takes one."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from fastapi.routing import APIRoute

from labcrunch_service.app import BODY_LIMITS, DOMAINS
from labcrunch_service.http import bodies
from labcrunch_service.http.bodies import JsonBodyRoute
from labcrunch_service.http.health import info_router
from labcrunch_service.http.health import router as health_routes
from labcrunch_service.settings import Limits
from tests.conftest import assert_problem, serving

SMALL = Limits(max_body_bytes=1000, max_json_body_bytes=3000, max_gradient_body_bytes=6000,
               max_minimize_body_bytes=1000, max_fit_body_bytes=6000, max_pyhf_body_bytes=2000,
               max_fractal_body_bytes=500)
JSON = {"Content-Type": "application/json"}


def padded(size: int, **fields) -> bytes:
    """A JSON object of ``size`` bytes (a `pad` field makes up the rest)."""
    import json

    text = json.dumps({**fields, "pad": ""})
    return text.replace('"pad": ""', '"pad": "' + "p" * (size - len(text)) + '"').encode()


@pytest.fixture(scope="module")
def small():
    with serving(limits=SMALL) as client:
        yield client


@pytest.mark.parametrize(("path", "size", "headers", "limit"), [
    ("/v1/minimize", 1001, JSON, "max_minimize_body_bytes"),
    ("/v1/fractal", 501, JSON, "max_fractal_body_bytes"),
    ("/v1/pyhf/fit", 2001, JSON, "max_pyhf_body_bytes"),
    ("/v1/gradient", 3001, JSON, "max_json_body_bytes"),          # JSON: the JSON limit binds
    ("/v1/gradient", 3001, {}, "max_json_body_bytes"),            # no Content-Type is read as JSON
    ("/v1/gradient", 6001, {"Content-Type": "application/x-npz"}, "max_gradient_body_bytes"),
    ("/v1/fit/line", 6001, {"Content-Type": "application/x-npy"}, "max_fit_body_bytes"),
])
def test_each_route_has_its_body_limit(small, path, size, headers, limit):
    body = assert_problem(small.post(path, content=padded(size), headers=headers), 413)
    assert body["limit"] == limit and body["maximum"] == getattr(SMALL, limit)
    assert body["value"] == size and f"limits.{limit}" in body["detail"]


def test_a_body_under_its_route_limit_is_read(small):
    """A 5,000-byte .npz is over the JSON limit and under the gradient route's: it is read (and
    refused for what it is, not for its size)."""
    body = assert_problem(small.post("/v1/gradient", params={"expression": "x"}, content=b"x" * 5000,
                                     headers={"Content-Type": "application/x-npz"}), 422)
    assert "npz" in body["detail"]


def test_a_chunked_body_is_counted_against_its_route_limit(small):
    def chunks():
        yield b'{"expression": "x", "start": {"x": 1.0}, "pad": "'
        for _ in range(20):
            yield b"p" * 100

    body = assert_problem(small.post("/v1/minimize", content=chunks(), headers=JSON), 413)
    assert body["limit"] == "max_minimize_body_bytes" and body["request_id"]


def test_info_lists_every_body_limit(small):
    limits = small.get("/v1/info").json()["limits"]
    for name in {"max_body_bytes", "max_json_body_bytes", *BODY_LIMITS.values()}:
        assert limits[name] == getattr(SMALL, name)


def test_every_domain_names_a_body_limit():
    assert set(BODY_LIMITS) == set(DOMAINS)
    for limit in BODY_LIMITS.values():
        assert limit in Limits.model_fields


def test_every_route_with_a_json_body_validates_it_off_the_event_loop():
    routers = [domain.router for domain in DOMAINS] + [health_routes, info_router]
    for router in routers:
        for route in router.routes:
            if isinstance(route, APIRoute) and route.body_field is not None:
                assert isinstance(route, JsonBodyRoute), f"{route.path} parses its body on the loop"


def test_large_json_bodies_are_validated_in_a_worker_thread(monkeypatch):
    """Over _INLINE_JSON_BYTES the model is validated in a worker thread; below, on the loop."""
    from labcrunch_service.app import create_app
    from labcrunch_service.settings import Settings

    threads: list[int] = []
    validate = bodies._validate

    def recording(adapter, body):
        threads.append(threading.get_ident())
        return validate(adapter, body)

    monkeypatch.setattr(bodies, "_validate", recording)
    app = create_app(Settings(warmup=False, load_tensorflow=False))
    model = {"simple": {"kind": "uncorrelated_background", "signal": [5.0], "bkg": [50.0],
                        "bkg_uncertainty": [5.0]}}
    large = padded(bodies._INLINE_JSON_BYTES + 1, model=model)  # `pad` is an unknown field: 422

    async def scenario() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            for body in (large, padded(100, model=model)):
                assert_problem(await client.post("/v1/pyhf/fit", content=body, headers=JSON), 422)
        return threads

    loop_thread = threading.get_ident()  # asyncio.run's loop runs in this thread
    large_thread, small_thread = asyncio.run(scenario())
    assert large_thread != loop_thread and small_thread == loop_thread
