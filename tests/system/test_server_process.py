"""The real thing: `labcrunch serve` as a subprocess on a free port, driven through Client."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from labcrunch import Client, NotFoundError
from tests.helpers.servers import labcrunch_serve

pytestmark = pytest.mark.slow  # starts `labcrunch serve` and waits for it: tens of seconds


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    with labcrunch_serve(log_path, Path.cwd(), LABCRUNCH_LOAD_TENSORFLOW="false") as url:
        yield url, log_path


def test_served_info_through_the_client(server):
    url, _ = server
    with Client(url) as lc:
        info = lc.info()
    assert info.service == "labcrunch" and info.ready is True
    assert info.backends["jax"].available is True
    assert info.backends["tensorflow"].version  # installed, loaded lazily in this server


def test_served_errors_map_to_exceptions_with_request_ids(server):
    url, log_path = server
    from labcrunch._base import Call, json_answer

    with Client(url) as lc:
        with pytest.raises(NotFoundError) as err:
            lc._send(Call("GET", "/v1/does-not-exist", json_answer(dict),
                          headers={"X-Request-ID": "find-me-42"}))
        assert err.value.request_id == "find-me-42"
        assert err.value.problem["instance"] == "/v1/does-not-exist"
    time.sleep(0.2)
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    access = [entry for entry in lines if entry.get("request_id") == "find-me-42"]
    assert access and access[-1]["status"] == 404 and access[-1]["path"] == "/v1/does-not-exist"
