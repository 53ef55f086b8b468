"""The real thing: `labcrunch serve` as a subprocess on a free port, driven through Client: its
HTTP process never loads a numerical framework (its workers do), and SIGTERM drains it and
leaves no process behind."""

from __future__ import annotations

import json
import re
import signal
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from labcrunch import Client, NotFoundError
from tests.helpers.servers import labcrunch_process

pytestmark = pytest.mark.slow  # starts `labcrunch serve` and waits for it: tens of seconds

GRACE_SECONDS = 3
#: Shared libraries of the frameworks, as they appear in /proc/PID/maps once imported (pyhf and
#: optax are pure Python; pyhf imports scipy, optax imports jax).
FRAMEWORK_LIBRARIES = ("/jaxlib/", "/tensorflow/", "/scipy/")
# A program that runs for tens of seconds (10,000 trips, eagerly: too long to compile).
LONG_PROGRAM = "def f(x):\n    for i in range(10000):\n        x = sin(x) * 0.999 + 0.001\n    return x\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    with labcrunch_process(log_path, Path.cwd(), LABCRUNCH_LOAD_TENSORFLOW="false",
                           LABCRUNCH_SHUTDOWN_GRACE_SECONDS=str(GRACE_SECONDS),
                           LABCRUNCH_CPU_WORKERS="1") as (url, process):
        yield url, log_path, process


def test_served_info_through_the_client(server):
    url, _, _ = server
    with Client(url) as lc:
        info = lc.info()
    assert info.service == "labcrunch" and info.ready is True
    assert info.backends["jax"].available is True
    assert info.backends["tensorflow"].version  # installed, loaded lazily in this server


def test_served_errors_map_to_exceptions_with_request_ids(server):
    url, log_path, _ = server
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


def _mapped_frameworks(pid: int) -> set[str]:
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return set()
    return {lib for lib in FRAMEWORK_LIBRARIES if lib in maps}


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/PID/maps")
def test_the_http_process_never_loads_a_framework_its_workers_do(server):
    """After a request to every domain, the serving process has mapped no JAX, TensorFlow or
    SciPy library; a worker process has."""
    url, _, proc = server
    smoke = {"/v1/gradient": {"expression": "sin(x) * y", "at": {"x": [0.1, 0.2], "y": 2.0}},
             "/v1/minimize": {"expression": "(x - 1)**2", "start": {"x": 3.0}, "steps": 5},
             "/v1/fit/line": {"x": [0.0, 1.0, 2.0], "y": [1.0, 3.0, 5.1]},
             "/v1/pyhf/fit": {"model": {"simple": {"kind": "uncorrelated_background", "signal": [5.0],
                                                   "bkg": [10.0], "bkg_uncertainty": [3.5]}},
                              "data": "asimov"},
             "/v1/fractal": {"format": "npy", "width": 16, "height": 8}}
    with httpx.Client(base_url=url, timeout=120) as client:
        for path, body in smoke.items():
            assert client.post(path, json=body).status_code == 200, path
        assert client.post("/v1/gradient", json={"expression": "x", "at": {"x": 1.0},
                                                 "backend": "tensorflow"}).status_code in (200, 503)
    assert _mapped_frameworks(proc.pid) == set()
    loaded = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)
              if "/jaxlib/" in _mapped_frameworks(c.pid)]
    assert loaded, "no worker process loaded JAX: the check above proves nothing"


def test_sigterm_drains_within_the_grace_period_and_leaves_no_process(server):
    """SIGTERM with a long computation running: the server waits at most its grace period, then
    stops the computation, the workers and the local Ray; none of its processes is left, nor
    Ray's temporary folder. (Last in this module: it stops the module's server.)"""
    url, log_path, proc = server
    answers: list[int | str] = []

    def long_request() -> None:
        try:
            answers.append(httpx.post(f"{url}/v1/gradient", timeout=120, json={
                "program": LONG_PROGRAM, "function": "f", "at": {"x": [0.5] * 200}}).status_code)
        except httpx.HTTPError as exc:
            answers.append(type(exc).__name__)

    sender = threading.Thread(target=long_request)
    sender.start()
    with Client(url) as lc:
        deadline = time.monotonic() + 60
        while not any(w.get("state") == "busy" for w in httpx.get(f"{url}/v1/info").json()["compute"]["workers"]):
            assert time.monotonic() < deadline, "the long request never started"
            time.sleep(0.1)
        assert lc.ready()
    family = psutil.Process(proc.pid).children(recursive=True)
    temp_dirs = {Path(m) for c in family for m in re.findall(r"/\S*?labcrunch-ray-[^/\s=,]+",
                                                              " ".join(_cmdline(c)))}
    assert len(family) >= 3 and temp_dirs  # Ray's processes and the worker
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=GRACE_SECONDS + 60)
    stopped = time.monotonic() - sent
    sender.join(timeout=60)
    assert stopped < GRACE_SECONDS + 30, log_path.read_text()[-3000:]
    assert answers and answers[0] != 200  # cut at the grace period, not waited for
    left = [c for c in family if _alive(c)]
    assert not left, [(c.pid, _cmdline(c)[:3]) for c in left]
    assert not [d for d in temp_dirs if d.exists()]
    assert "Future exception was never retrieved" not in log_path.read_text()


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
