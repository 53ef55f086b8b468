"""API keys and owners: one rule for credentials, checked before any body is read."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi.testclient import TestClient

from labcrunch_service.app import create_app
from labcrunch_service.http.deps import OwnerDep
from labcrunch_service.settings import Settings
from tests.conftest import assert_problem

KEYS = {"alice": "k-alice", "bob": "k-bob"}


def _app(**settings):
    return create_app(Settings(warmup=False, load_tensorflow=False, log_json=False, **settings))


@pytest.fixture(scope="module")
def keyed():
    with TestClient(_app(api_keys=KEYS)) as client:
        yield client


def _owner_probe(app) -> list[str]:
    """Record the owner every request to ``/v1/whoami`` has, as routes see it (``OwnerDep``)."""
    owners: list[str] = []

    @app.get("/v1/whoami")
    async def whoami(owner: OwnerDep) -> None:
        owners.append(owner)

    return owners


def test_the_one_rule_for_credentials(keyed):
    ok = {"Authorization": "Bearer k-alice"}
    assert keyed.get("/v1/info", headers=ok).status_code == 200
    assert keyed.get("/v1/info", headers={"X-API-Key": "k-bob"}).status_code == 200
    assert keyed.get("/v1/info", headers={"authorization": "bearer k-alice"}).status_code == 200
    refused = [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Bearer k-alice "},           # trailing space: not the key
        {"Authorization": "Bearer  k-alice"},           # two spaces: not the key either
        {"Authorization": "Basic k-alice"},             # another scheme
        {"Authorization": "k-alice"},
        {"Authorization": "Bearer wrong", "X-API-Key": "k-alice"},  # a wrong key never hides
        {"Authorization": "Bearer k-alice", "X-API-Key": "wrong"},
        {"Authorization": "Bearer k-alice", "X-API-Key": "k-bob"},  # two owners at once
        {"X-API-Key": ""},
    ]
    for headers in refused:
        body = assert_problem(keyed.get("/v1/info", headers=headers), 401)
        assert "API key" in body["detail"] and "k-alice" not in str(body), headers
    both = {"Authorization": "Bearer k-bob", "X-API-Key": "k-bob"}  # the same key twice is fine
    assert keyed.get("/v1/info", headers=both).status_code == 200


def test_non_ascii_keys_compare_as_utf8_bytes():
    with TestClient(_app(api_keys=["clé"])) as client:
        assert client.get("/v1/info", headers={"X-API-Key": "clé".encode()}).status_code == 200
        assert_problem(client.get("/v1/info", headers={"X-API-Key": "cle"}), 401)
        assert_problem(client.get("/v1/info", headers={"X-API-Key": "caf\xe9".encode("latin-1")}), 401)
        assert_problem(client.get("/v1/info", headers={"Authorization": b"Bearer \xe9"}), 401)


def test_health_is_open_and_docs_follow_public_docs(keyed):
    assert keyed.get("/livez").status_code == 200
    assert keyed.get("/openapi.json").status_code == 200  # LABCRUNCH_PUBLIC_DOCS defaults to true
    assert keyed.get("/docs").status_code == 200
    with TestClient(_app(api_keys=KEYS, public_docs=False)) as closed:
        assert closed.get("/livez").status_code == 200
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert_problem(closed.get(path), 401)
            assert closed.get(path, headers={"X-API-Key": "k-bob"}).status_code == 200


def test_the_document_says_how_to_send_a_key(keyed):
    document = keyed.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert {"HTTPBearer", "APIKeyHeader"} <= set(schemes)
    assert document["paths"]["/v1/gradient"]["post"]["security"]


def test_an_unauthenticated_body_is_refused_unread():
    """A 60 MB upload without a key is answered 401 before the app reads one byte of it."""
    app = _app(api_keys=KEYS)
    chunks_read = 0

    async def upload():
        nonlocal chunks_read
        for _ in range(60):
            chunks_read += 1
            yield b"[" + b"1," * (512 * 1024 - 1) + b"1]"

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return await client.post("/v1/minimize", content=upload(),
                                     headers={"Content-Type": "application/json"})

    response = asyncio.run(scenario())
    assert_problem(response, 401)
    assert chunks_read <= 1  # httpx may have produced the first chunk; nobody asked for more


def test_owners_are_key_names_or_addresses():
    app = _app(api_keys=KEYS)
    owners = _owner_probe(app)
    with TestClient(app) as client:
        client.get("/v1/whoami", headers={"X-API-Key": "k-bob"})
        client.get("/v1/whoami", headers={"Authorization": "Bearer k-alice"})
    assert owners == ["bob", "alice"]

    plain = _app(api_keys=["first", "second"])
    owners = _owner_probe(plain)
    with TestClient(plain) as client:
        client.get("/v1/whoami", headers={"X-API-Key": "second"})
    assert owners == ["key-2"]

    open_app = _app()
    owners = _owner_probe(open_app)
    with TestClient(open_app) as client:  # TestClient's address is "testclient"
        client.get("/v1/whoami")
    assert owners == ["testclient"]


def test_keys_must_be_distinct_and_non_empty():
    with pytest.raises(ValueError, match="distinct"):
        Settings(api_keys={"alice": "same", "bob": "same"})
    with pytest.raises(ValueError, match="non-empty"):
        Settings(api_keys=[""])
