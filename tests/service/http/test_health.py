"""Health and service description: /livez, /readyz, /v1/info."""

from __future__ import annotations

from fastapi.testclient import TestClient

from labcrunch_service.app import create_app
from labcrunch_service.settings import Settings
from tests.conftest import assert_problem


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
    compute = info["compute"]
    assert compute["max_queued_per_owner"] == settings.max_queued_per_owner
    assert compute["cluster"] == "local" and compute["max_concurrent_jobs"] == len(compute["workers"]) >= 1
    shared = compute["shared_memory"]  # the blocks that carry large arrays to local workers
    assert shared["budget_bytes"] == settings.shared_memory_bytes > 0
    assert 0 <= shared["free_blocks"] <= shared["blocks"] and shared["bytes"] <= shared["budget_bytes"]
    for worker in compute["workers"]:  # the backends above are a worker's view; the workers' own
        assert worker["state"] in ("warming", "idle", "busy", "restarting")
        assert worker["device"] == "cpu" and worker["node"]
