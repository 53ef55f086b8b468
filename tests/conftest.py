"""Shared fixtures: one in-process app for the whole session, driven through HTTP or the client.

Plain helpers and reference data that are not fixtures live in tests/helpers/.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

import labcrunch._base
from labcrunch import AsyncClient, Client
from labcrunch_service import backends
from labcrunch_service.app import create_app
from labcrunch_service.settings import Limits, Settings
from tests.helpers.apps import make_app

# The service's data (JAX's persistent compilation cache) goes to this session's own folder, never
# the user's; servers the tests start inherit it. Set before configure() reads it.
os.environ["LABCRUNCH_DATA_DIR"] = tempfile.mkdtemp(prefix="labcrunch-tests-")
atexit.register(shutil.rmtree, os.environ["LABCRUNCH_DATA_DIR"], ignore_errors=True)
backends.configure()  # tests that call domain code directly see the same x64 set-up as the app


def wait_ready(client: TestClient, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while client.get("/readyz").status_code != 200:
        if time.monotonic() > deadline:
            raise RuntimeError("app did not become ready")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Default limits, no warm-up compiles (tests compile what they use)."""
    return Settings(warmup=False, log_json=False)


@pytest.fixture(scope="session")
def app(settings: Settings):
    return create_app(settings)


@pytest.fixture(scope="session")
def api(app):
    """A TestClient over the session's app, lifespan started and warm-up done."""
    with TestClient(app) as client:
        wait_ready(client)
        yield client


@pytest.fixture(scope="session")
def lc(api) -> Iterator[Client]:
    """The client over the session's app (through the TestClient's transport), no retries."""
    with Client("http://testserver", transport=api._transport, max_retries=0) as client:
        yield client


@pytest.fixture(scope="session")
def async_client(app, api) -> Callable[[], AsyncClient]:
    """Makes an AsyncClient over the session's app (lifespan started by ``api``), no retries.

    Made inside the test's own event loop: ``async with async_client() as alc: ...``.
    """
    def make() -> AsyncClient:
        return AsyncClient("http://app", transport=httpx.ASGITransport(app=app), max_retries=0)

    return make


@pytest.fixture(scope="module")
def test_api():
    """A TestClient over an app with test-only routes (tests.helpers.apps) and a 1000-byte body
    limit; server exceptions come back as 500 answers."""
    with TestClient(make_app(limits=Limits(max_body_bytes=1000)), raise_server_exceptions=False) as c:
        wait_ready(c)
        yield c


@pytest.fixture
def sleeps(monkeypatch):
    """Record the client's backoff sleeps instead of sleeping."""
    waited: list[float] = []
    monkeypatch.setattr(labcrunch._base.time, "sleep", waited.append)

    async def fake_async_sleep(seconds: float) -> None:
        waited.append(seconds)

    monkeypatch.setattr(labcrunch._base.asyncio, "sleep", fake_async_sleep)
    return waited


@contextmanager
def serving(**settings: Any) -> Iterator[TestClient]:
    """A TestClient over a fresh app with these settings (e.g. tiny limits), ready to use."""
    app = create_app(Settings(warmup=False, load_tensorflow=False, log_json=False, **settings))
    with TestClient(app) as client:
        wait_ready(client)
        yield client


def assert_problem(response, status: int) -> dict:
    """Assert an RFC 9457 problem answer with the given status; return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    for key in ("type", "title", "status", "detail"):
        assert key in body, body
    assert body["status"] == status
    return body


@pytest.fixture(scope="session")
def live_server(tmp_path_factory) -> Iterator[str]:
    """``labcrunch serve`` as a process on a free port (no API keys, no warm-up compiles), run
    from the repository root like the README's examples; its URL. Shared by the README examples
    and the browser tests."""
    from tests.helpers import ROOT
    from tests.helpers.servers import labcrunch_serve

    log = tmp_path_factory.mktemp("live-server") / "server.log"
    # Examples and browser tests share it, several at once, on a CI machine that may be busy:
    # the 60 s wall time (queue wait included) is a production guard, not what they test.
    with labcrunch_serve(log, ROOT, LABCRUNCH_WARMUP="false", LABCRUNCH_LOAD_TENSORFLOW="false",
                         LABCRUNCH_API_KEYS="[]", LABCRUNCH_LIMITS__MAX_WALL_SECONDS="600") as url:
        yield url
