"""Jobs against a real server process (uvicorn on a port, the job store on disk): 202 + Location,
progress that increases, results equal to the synchronous answers (JSON and binary), live
Server-Sent Events, cancel within 2 s with the CPU stopping, owners apart, and after `kill -9`
and a restart on the same data folder: finished results there, the queued job run, the running
one run again; then results expiring after a tiny TTL.

The server is the test app (``python -m tests.helpers.apps``): the real application plus a
CPU-bound route whose steps and pace the tests choose."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest

from labcrunch_service.compute import cluster
from tests.helpers import ROOT, until
from tests.helpers.servers import free_port, wait_until_ready

pytestmark = pytest.mark.slow  # server processes, a restart: tens of seconds

ALICE = {"Authorization": "Bearer k-alice"}
BOB = {"Authorization": "Bearer k-bob"}
ASYNC = {"Prefer": "respond-async"}
GRADIENT = {"expression": "x**3 * y", "at": {"x": [2.0, -1.0], "y": [1.0, 3.0]}}


@dataclass
class Server:
    folder: Path
    log: Path
    url: str = ""
    process: subprocess.Popen | None = None

    def start(self, ready: str = "/readyz", **settings: str) -> None:
        port = free_port()
        env = {**os.environ, "LABCRUNCH_API_KEYS": json.dumps({"alice": "k-alice", "bob": "k-bob"}),
               "LABCRUNCH_DATA_DIR": str(self.folder), "LABCRUNCH_MAX_RUNNING_JOBS": "1",
               "LABCRUNCH_LOAD_TENSORFLOW": "false", **settings}
        with open(self.log, "a") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "tests.helpers.apps", str(port)],
                                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}"
        process = self.process
        wait_until_ready(self.url, 240, alive=lambda: process.poll() is None, log=self.log, path=ready)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("jobs-server")
    running = Server(folder / "data", folder / "server.log")
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=ALICE, timeout=30.0) as client:
        yield client


def ray_folders_of(pid: int) -> list[Path]:
    """The folders of the local Rays that process ``pid`` started."""
    owners = {folder: cluster.folder_owner(folder)
              for folder in Path(cluster.short_temp_root()).glob(f"{cluster.FOLDER_PREFIX}*")}
    return [folder for folder, owner in owners.items() if owner is not None and owner[0] == pid]


def status_is(http: httpx.Client, location: str, *statuses: str) -> Callable[[], dict | None]:
    def check() -> dict | None:
        document = http.get(location).json()
        return document if document["status"] in statuses else None

    return check


def burn(http: httpx.Client, steps: int, seconds_each: float) -> str:
    submitted = http.post("/v1/test/burn", params={"steps": steps, "seconds_each": seconds_each},
                          headers=ASYNC)
    assert submitted.status_code == 202, submitted.text
    return submitted.headers["location"]


def without_time(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k != "elapsed_ms"}


def test_202_location_progress_and_a_json_result_equal_to_the_synchronous_one(http):
    submitted = http.post("/v1/gradient", json=GRADIENT, headers=ASYNC)
    assert submitted.status_code == 202 and submitted.headers["preference-applied"] == "respond-async"
    location = submitted.headers["location"]
    assert location == f"/v1/jobs/{submitted.json()['id']}"
    until(status_is(http, location, "succeeded"))
    result = http.get(f"{location}/result")
    assert result.headers["content-type"] == "application/json"
    assert without_time(result.json()) == without_time(http.post("/v1/gradient", json=GRADIENT).json())
    assert result.json()["gradient"]["x"] == [12.0, 9.0]  # 3 x² y

    location = burn(http, 40, 0.05)
    seen: list[float] = []

    def finished() -> bool:
        document = http.get(location).json()
        if document["progress"] and document["status"] == "running":
            seen.append(document["progress"]["done"])
        return document["status"] == "succeeded"

    until(finished, every=0.1)
    assert seen == sorted(seen) and len(set(seen)) >= 3 and seen[-1] > seen[0]


def test_binary_results_equal_the_synchronous_answers(http):
    png = "/v1/fractal/mandelbrot.png?width=48&height=32&max_iter=100"
    location = http.get(png, headers=ASYNC).headers["location"]
    until(status_is(http, location, "succeeded"))
    result = http.get(f"{location}/result", headers={"Accept": "image/png"})
    assert result.headers["content-type"] == "image/png"
    assert result.content == http.get(png).content and result.content.startswith(b"\x89PNG")

    npz = {"Accept": "application/x-npz"}
    location = http.post("/v1/gradient", json=GRADIENT, headers={**ASYNC, **npz}).headers["location"]
    until(status_is(http, location, "succeeded"))
    result = http.get(f"{location}/result", headers=npz)
    assert result.headers["content-type"] == "application/x-npz"
    stored = np.load(io.BytesIO(result.content))
    direct = np.load(io.BytesIO(http.post("/v1/gradient", json=GRADIENT, headers=npz).content))
    assert set(stored.files) == set(direct.files)
    for name in set(stored.files) - {"elapsed_ms"}:
        np.testing.assert_array_equal(stored[name], direct[name])


def test_events_stream_live(http):
    location = burn(http, 60, 0.05)  # 3 s: progress reaches the server from its worker every 0.25 s
    arrivals: list[tuple[float, str, dict[str, Any]]] = []
    event = None
    with http.stream("GET", f"{location}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                arrivals.append((time.monotonic(), event, json.loads(line.removeprefix("data: "))))
    kinds = [kind for _, kind, _ in arrivals]
    assert kinds[0] == "status" and kinds[-1] == "status" and arrivals[-1][2]["status"] == "succeeded"
    progress = [(when, data["done"]) for when, kind, data in arrivals if kind == "progress"]
    assert len(progress) >= 3 and [d for _, d in progress] == sorted(d for _, d in progress)
    assert arrivals[-1][0] - progress[0][0] > 0.5  # streamed as it happened, not at the end


def test_cancel_stops_a_running_job_and_its_cpu_within_2_s(http, server):
    """The job burns CPU in a worker process (a descendant of the server's); after the cancel,
    that process is ended (or idle) within 2 s."""
    location = burn(http, 100_000, 0.01)
    until(lambda: http.get(location).json()["progress"])
    processes = psutil.Process(server.process.pid).children(recursive=True)
    before = {p.pid: _cpu(p) for p in processes}
    time.sleep(1.0)
    used = {p: _cpu(p) - before[p.pid] for p in processes}  # CPU seconds in one second
    worker = max(used, key=used.__getitem__)
    busy = used[worker]
    cancelled_at = time.monotonic()
    assert http.delete(location).json()["status"] == "cancelled"
    assert time.monotonic() - cancelled_at < 2
    time.sleep(max(0.0, cancelled_at + 1.0 - time.monotonic()))
    start = _cpu(worker)
    time.sleep(1.0)
    idle = _cpu(worker) - start  # from 1 s to 2 s after the cancel (0 once its process is gone)
    assert busy > 0.05 and idle < min(0.2, busy / 3), (busy, idle)
    document = http.get(location).json()
    assert document["status"] == "cancelled" and document["progress"]["done"] < 100_000
    assert http.get(f"{location}/result").status_code == 409


def _cpu(process: psutil.Process) -> float:
    """User + system CPU seconds of a process so far; 0 once it has ended."""
    try:
        times = process.cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return times.user + times.system


def test_a_job_is_visible_to_its_owner_only(http, server):
    location = burn(http, 1, 0.0)
    until(status_is(http, location, "succeeded"))
    with httpx.Client(base_url=server.url, headers=BOB, timeout=30.0) as bob:
        for method, url in [("GET", location), ("GET", f"{location}/result"),
                            ("GET", f"{location}/events"), ("DELETE", location)]:
            refused = bob.request(method, url)
            assert refused.status_code == 404 and refused.json()["status"] == 404
        assert location.rsplit("/", 1)[1] not in {j["id"] for j in bob.get("/v1/jobs").json()["jobs"]}
    assert location.rsplit("/", 1)[1] in {j["id"] for j in http.get("/v1/jobs").json()["jobs"]}


def test_kill_9_and_a_restart_lose_nothing_then_results_expire(http, server):
    finished = http.post("/v1/gradient", json=GRADIENT, headers=ASYNC).headers["location"]
    until(status_is(http, finished, "succeeded"))
    finished_result = http.get(f"{finished}/result").content
    running = burn(http, 80, 0.05)
    until(status_is(http, running, "running"))
    queued = http.post("/v1/gradient", json={"expression": "x**2", "at": {"x": 3.0}},
                       headers=ASYNC).headers["location"]
    assert http.get(queued).json()["status"] == "queued"

    killed = server.process.pid
    server.kill()
    left = ray_folders_of(killed)
    assert left  # kill -9: no exit hook removed the local Ray's folder
    # The same data folder; results kept 5 s from now on. Jobs run again as soon as the server
    # listens (before its warm-up is done): look from then on.
    server.start(ready="/livez", LABCRUNCH_JOB_RESULT_TTL="5")
    with httpx.Client(base_url=server.url, headers=ALICE, timeout=30.0) as again:
        document = again.get(finished).json()
        assert document["status"] == "succeeded"
        assert again.get(f"{finished}/result").content == finished_result
        rerun = until(status_is(again, running, "succeeded", "failed"))
        assert rerun["status"] == "succeeded" and rerun["attempts"] == 2
        assert not [folder for folder in left if folder.exists()]  # the new local Ray removed it
        assert again.get(f"{running}/result").json()["steps"] == 80
        ran = until(status_is(again, queued, "succeeded", "failed"))
        assert ran["status"] == "succeeded" and ran["attempts"] == 1
        assert again.get(f"{queued}/result").json()["gradient"]["x"] == 6.0
        # Finished under the 5 s TTL: gone a few seconds later; the old result keeps its own.
        until(lambda: again.get(queued).status_code == 404, seconds=15, every=0.2)
        assert again.get(f"{queued}/result").status_code == 404
        assert again.get(finished).json()["status"] == "succeeded"
