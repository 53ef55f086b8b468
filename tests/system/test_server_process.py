"""The real thing: `labcrunch serve` as a subprocess on a free port, driven through Client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labcrunch import Client, NotFoundError
from tests.helpers.servers import free_port

pytestmark = pytest.mark.slow  # starts `labcrunch serve` and waits for it: tens of seconds


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    exe = Path(sys.executable).with_name("labcrunch")
    env = {**os.environ, "LABCRUNCH_LOAD_TENSORFLOW": "false", "LABCRUNCH_LOG_JSON": "true"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(exe), "serve", "--host", "127.0.0.1", "--port", str(port)],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        with Client(url, max_retries=0) as lc:
            deadline = time.monotonic() + 240
            while True:
                try:
                    if lc.ready():
                        break
                except Exception:  # noqa: BLE001 - not listening yet
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.25)
        yield url, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


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
