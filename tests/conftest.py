"""Shared fixtures: one in-process app for the whole session, driven through HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient

from labcrunch_service import backends
from labcrunch_service.app import create_app
from labcrunch_service.settings import Settings

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
