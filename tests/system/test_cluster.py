"""Several machines, on one: a real two-node Ray cluster (a head and a second node, each started
with `ray start` as README "Several GPU servers" says, on free ports, with token authentication)
and `labcrunch serve` joining it: workers start on both nodes and requests land on both.

The cluster is this test's own: its processes are stopped by their ids at the end (never with
`ray stop`, which would stop every Ray of this user on the machine)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

pytestmark = pytest.mark.slow  # two Ray nodes and a server: a minute

RAY = Path(sys.executable).with_name("ray")
LABCRUNCH = Path(sys.executable).with_name("labcrunch")


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def start(command: list[str], log: Path, env: dict[str, str], ready: str, seconds: float = 180):
    """Start ``command`` in its own session; wait for ``ready`` in its output."""
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
    deadline = time.monotonic() + seconds
    while ready not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            raise RuntimeError(f"{command[:3]} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.25)
    return process


def stop(process: subprocess.Popen) -> None:
    """SIGTERM (`ray start --block` then stops the node's processes), then, if needed, SIGKILL
    to what is left of the session this test started."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
    for leftover in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if os.getsid(leftover.pid) == process.pid:
                leftover.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


def node_options(ports: list[int]) -> list[str]:
    """Every port a node opens, chosen free (other Rays may run on this machine)."""
    names = ("dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
             "metrics-export-port", "node-manager-port", "object-manager-port")
    return [f"--{name}={port}" for name, port in zip(names, ports, strict=True)]


@pytest.fixture
def short_tmp():
    """A temporary folder with a short path: Ray's sockets live under it (107 bytes at most)."""
    folder = Path(tempfile.mkdtemp(prefix="lc-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_workers_start_on_both_nodes_and_requests_land_on_both(short_tmp):
    tmp_path = short_tmp
    ports = free_ports(16)
    head_port, client_port, server_port = ports[:3]
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", "--block"]
    started = []
    try:
        started.append(start([str(RAY), "start", "--head", f"--port={head_port}",
                              f"--ray-client-server-port={client_port}", "--include-dashboard=false",
                              f"--temp-dir={tmp_path / 'head'}", *node_options(ports[3:9]), *common],
                             tmp_path / "head.log", env, "block forever"))
        started.append(start([str(RAY), "start", f"--address=127.0.0.1:{head_port}",
                              '--resources={"second_node": 1}', f"--temp-dir={tmp_path / 'node'}",
                              *node_options(ports[9:15]), *common],
                             tmp_path / "node.log", env, "block forever"))
        serve_env = {**env, "LABCRUNCH_RAY_ADDRESS": f"127.0.0.1:{head_port}",
                     "LABCRUNCH_CPU_WORKERS": "1", "LABCRUNCH_WARMUP": "false",
                     "LABCRUNCH_LOAD_TENSORFLOW": "false", "LABCRUNCH_LOG_JSON": "false"}
        server = start([str(LABCRUNCH), "serve", "--port", str(server_port)], tmp_path / "serve.log",
                       serve_env, "labcrunch_service.app: ready")
        started.append(server)
        url = f"http://127.0.0.1:{server_port}"
        info = httpx.get(f"{url}/v1/info", timeout=30).json()["compute"]
        assert info["cluster"] == f"127.0.0.1:{head_port}"
        nodes = {w["node_id"] for w in info["workers"]}
        assert len(info["workers"]) == 2 and len(nodes) == 2, info["workers"]  # one per node

        statuses: list[int] = []

        def render() -> None:  # ~0.5 s each: concurrent ones overlap
            statuses.append(httpx.get(f"{url}/v1/fractal/mandelbrot.png",
                                      params={"width": 400, "height": 400, "max_iter": 2000},
                                      timeout=120).status_code)

        senders = [threading.Thread(target=render) for _ in range(4)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        assert statuses == [200] * 4
        workers = httpx.get(f"{url}/v1/info", timeout=30).json()["compute"]["workers"]
        done = {w["node_id"]: w["jobs_done"] for w in workers}
        assert set(done) == nodes and all(count >= 1 for count in done.values()), json.dumps(workers)

        # Large arrays: through a block of shared memory to the worker on the server's own node,
        # copied into the call for the other one; the answers right either way.
        rng = np.random.default_rng(3)
        x, y = rng.uniform(-3, 3, 200_000), rng.uniform(-3, 3, 200_000)
        body = io.BytesIO()
        np.savez(body, x=x, y=y)
        answers: list[dict[str, np.ndarray]] = []

        def differentiate() -> None:
            for _ in range(3):
                response = httpx.post(f"{url}/v1/gradient", content=body.getvalue(), timeout=120,
                                      params={"expression": "sin(x) * y**2"},
                                      headers={"Content-Type": "application/x-npz",
                                               "Accept": "application/x-npz"})
                response.raise_for_status()
                answers.append(dict(np.load(io.BytesIO(response.content))))

        senders = [threading.Thread(target=differentiate) for _ in range(4)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        assert len(answers) == 12
        for answer in answers:
            np.testing.assert_allclose(answer["value"], np.sin(x) * y**2, rtol=1e-12)
            np.testing.assert_allclose(answer["gradient"][:, 0], np.cos(x) * y**2, rtol=1e-12)
            np.testing.assert_allclose(answer["gradient"][:, 1], 2 * np.sin(x) * y, rtol=1e-12)
        workers = httpx.get(f"{url}/v1/info", timeout=30).json()["compute"]["workers"]
        after = {w["node_id"]: w["jobs_done"] for w in workers}
        assert all(after[node] > done[node] for node in nodes), json.dumps(workers)
    finally:
        for process in reversed(started):  # the server first, then the nodes
            stop(process)
    left = [p.pid for p in psutil.process_iter() if _names(p, tmp_path)]
    assert not left, "processes of this test's cluster are still running"


def _names(process: psutil.Process, folder: Path) -> bool:
    with contextlib.suppress(psutil.Error):
        return process.status() != psutil.STATUS_ZOMBIE and str(folder) in " ".join(process.cmdline())
    return False
