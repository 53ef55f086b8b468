"""labcrunch.service: info() typed and matching the server, from_json, ready()."""

from __future__ import annotations

import json

import httpx

from labcrunch import Client, ServiceInfo
from labcrunch_service import __version__ as server_version
from tests.helpers.mock_transport import INFO, PROBLEM, scripted


def test_info_is_typed_and_matches_the_servers_settings(lc, settings):
    info = lc.info()
    assert isinstance(info, ServiceInfo)
    assert info.service == "labcrunch" and info.version == server_version and info.ready is True
    assert info.limits == settings.limits.model_dump()
    assert info.compute.max_concurrent_jobs >= 1  # one per worker
    assert info.compute.max_queued_jobs == settings.max_queued_jobs
    assert info.auth == "none"
    import jax

    jax_backend = info.backends["jax"]
    assert jax_backend.available is True and jax_backend.version == jax.__version__
    assert len(jax_backend.devices) == len(jax.devices())
    assert set(info.backends) == {"jax", "tensorflow"}  # "libraries" is its own field
    import pyhf

    assert info.libraries["pyhf"] == pyhf.__version__


def test_info_from_json_round_trip(api):
    body = api.get("/v1/info").json()
    info = ServiceInfo.from_json(json.loads(json.dumps(body)))
    assert info.limits == body["limits"] and info.warmup_errors == body["warmup_errors"]
    assert info.backends["tensorflow"].version == body["backends"]["tensorflow"]["version"]
    assert info.libraries == body["backends"]["libraries"]
    parsed = ServiceInfo.from_json(INFO)
    assert parsed.backends["tensorflow"].available is None
    assert parsed.backends["tensorflow"].reason == "not loaded yet"
    assert parsed.backends["jax"].devices == ("cpu:0 cpu",) and parsed.libraries["scipy"] is None


def test_ready_is_a_bool_and_not_ready_is_false(sleeps):
    not_ready = httpx.Response(503, json={**PROBLEM, "status": 503}, headers={"retry-after": "1"})
    transport, calls = scripted(not_ready, httpx.Response(200, json={"status": "ready"}))
    with Client("http://x", transport=transport, max_retries=5) as lc:
        assert lc.ready() is False  # asks once by default
        assert lc.ready() is True
    assert len(calls) == 2 and sleeps == []
