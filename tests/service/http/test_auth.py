"""API keys guard /v1, not the health endpoints."""

from __future__ import annotations

from fastapi.testclient import TestClient

from labcrunch_service.app import create_app
from labcrunch_service.settings import Settings
from tests.conftest import assert_problem


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
