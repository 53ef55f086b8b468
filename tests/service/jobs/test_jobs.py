"""Jobs through HTTP, in-process: `Prefer: respond-async` on any route, the job document, results
equal to the synchronous answers, progress, the queue, cancelling, owners, events, quotas, expiry
and what a restart runs again."""

from __future__ import annotations

import asyncio
import io
import json
import time
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from labcrunch_service.http.responses import acceptable
from labcrunch_service.jobs.manager import JobManager
from labcrunch_service.jobs.middleware import prefers_async
from labcrunch_service.jobs.store import JobRecord, SqliteJobStore, StoredRequest
from labcrunch_service.settings import Limits, Settings
from tests.conftest import assert_problem, wait_ready
from tests.helpers import data_dir, until
from tests.helpers.apps import make_app

ALICE = {"Authorization": "Bearer k-alice"}
BOB = {"Authorization": "Bearer k-bob"}
ASYNC = {"Prefer": "respond-async"}
KEYS = {"alice": "k-alice", "bob": "k-bob"}


def finished(client: TestClient, location: str, headers: dict[str, str] = ALICE) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        document = client.get(location, headers=headers).json()
        return document if document["status"] in ("succeeded", "failed", "cancelled") else None

    return until(done)


def submit(client: TestClient, path: str, headers: dict[str, str] = ALICE, **kwargs: Any):
    response = client.post(path, headers={**headers, **ASYNC}, **kwargs)
    assert response.status_code == 202, response.text
    return response


@pytest.fixture(scope="module")
def jobs_api():
    """Two API keys, one job at a time: enough to see a queue."""
    with TestClient(make_app(api_keys=KEYS, max_running_jobs=1)) as client:
        wait_ready(client)
        yield client


def test_202_location_and_a_result_equal_to_the_synchronous_answer(jobs_api):
    body = {"expression": "x**3 * y", "at": {"x": [2.0, -1.0], "y": [1.0, 3.0]}, "order": 2}
    submitted = submit(jobs_api, "/v1/gradient", json=body)
    job = submitted.json()
    location = submitted.headers["location"]
    assert location == f"/v1/jobs/{job['id']}"
    assert submitted.headers["preference-applied"] == "respond-async"
    assert job["status"] in ("queued", "running") and job["endpoint"] == "POST /v1/gradient"
    assert job["owner"] == "alice" and job["created"].endswith("Z")
    assert "retry-after" in submitted.headers

    document = finished(jobs_api, location)
    assert document["status"] == "succeeded"
    assert document["result"] == f"{location}/result" and document["error"] is None
    assert document["started"] >= document["created"] and document["finished"] >= document["started"]
    assert "retry-after" not in jobs_api.get(location, headers=ALICE).headers
    result = jobs_api.get(f"{location}/result", headers=ALICE)
    sync = jobs_api.post("/v1/gradient", json=body, headers=ALICE)
    assert result.headers["content-type"] == sync.headers["content-type"] == "application/json"
    answer, expected = result.json(), sync.json()
    assert answer.pop("elapsed_ms") >= 0 and expected.pop("elapsed_ms") >= 0
    assert answer == expected
    assert answer["gradient"]["x"] == [12.0, 9.0]  # d/dx x^3 y = 3 x^2 y
    assert answer["hessian"][0] == [[12.0, 12.0], [12.0, 0.0]]


def test_binary_results_are_the_synchronous_bytes_with_their_headers(jobs_api):
    png = "/v1/fractal/julia.png?width=40&height=30&max_iter=64"
    location = jobs_api.get(png, headers={**ALICE, **ASYNC}).headers["location"]
    assert finished(jobs_api, location)["status"] == "succeeded"
    result = jobs_api.get(f"{location}/result", headers={**ALICE, "Accept": "image/*"})
    sync = jobs_api.get(png, headers=ALICE)
    assert result.headers["content-type"] == "image/png" and result.content == sync.content
    assert float(result.headers["x-elapsed-ms"]) >= 0 and result.headers["x-device"]

    npz = {"Accept": "application/x-npz"}
    body = {"expression": "exp(x)", "at": {"x": [0.0, 1.0]}}
    location = submit(jobs_api, "/v1/gradient", headers={**ALICE, **npz}, json=body).headers["location"]
    assert finished(jobs_api, location)["status"] == "succeeded"
    result = jobs_api.get(f"{location}/result", headers={**ALICE, **npz})
    assert result.headers["content-type"] == "application/x-npz"
    arrays = np.load(io.BytesIO(result.content))
    np.testing.assert_allclose(arrays["gradient"][:, 0], np.exp([0.0, 1.0]), rtol=1e-15)
    refused = assert_problem(jobs_api.get(f"{location}/result", headers={**ALICE, "Accept": "application/json"}), 406)
    assert "application/x-npz" in refused["detail"] and "submitted" in refused["detail"]


def test_bad_input_is_answered_at_once_and_makes_no_job(jobs_api):
    before = len(jobs_api.get("/v1/jobs?limit=500", headers=ALICE).json()["jobs"])
    invalid = jobs_api.post("/v1/gradient", json={"expression": "x", "at": "one"}, headers={**ALICE, **ASYNC})
    assert_problem(invalid, 422)
    over = assert_problem(jobs_api.post("/v1/test/burn?steps=1000000", headers={**ALICE, **ASYNC}), 413)
    assert over["limit"] == "steps"
    assert_problem(jobs_api.post("/v1/gradient", json={"expression": "x", "at": {"x": 1.0}},
                                 headers=ASYNC), 401)
    # A route that computes nothing answers as it always does: the preference is not applied.
    info = jobs_api.get("/v1/info", headers={**ALICE, **ASYNC})
    assert info.status_code == 200 and "preference-applied" not in info.headers
    assert len(jobs_api.get("/v1/jobs?limit=500", headers=ALICE).json()["jobs"]) == before


def test_a_domain_error_fails_the_job_with_the_synchronous_problem(jobs_api):
    body = {"expression": "x +* 2", "at": {"x": 1.0}}
    location = submit(jobs_api, "/v1/gradient", json=body).headers["location"]
    document = finished(jobs_api, location)
    sync = assert_problem(jobs_api.post("/v1/gradient", json=body, headers=ALICE), 422)
    assert document["status"] == "failed" and document["result"] is None
    error = document["error"]
    for key in ("type", "title", "status", "detail", "errors", "instance"):
        assert error[key] == sync[key], key
    assert error["errors"][0]["loc"] == ["body", "expression"]
    again = assert_problem(jobs_api.get(f"{location}/result", headers=ALICE), 422)  # the same answer
    assert again["detail"] == sync["detail"]


def test_progress_queue_position_and_cancelling(jobs_api):
    long = submit(jobs_api, "/v1/test/burn?steps=3000&seconds_each=0.01").headers["location"]
    queued = submit(jobs_api, "/v1/test/burn?steps=2&seconds_each=0.01").headers["location"]
    waiting = jobs_api.get(queued, headers=ALICE)
    assert waiting.json()["status"] == "queued" and waiting.json()["queue_position"] == 1
    assert waiting.headers["retry-after"]
    assert_problem(jobs_api.get(f"{queued}/result", headers=ALICE), 409)

    def progress() -> dict[str, Any] | None:
        return jobs_api.get(long, headers=ALICE).json()["progress"]

    first = until(progress)
    second = until(lambda: (p := progress()) and p["done"] > first["done"] and p)
    assert first["unit"] == "steps" and first["total"] == 3000.0
    assert 0 < second["fraction"] < 1 and second["eta_seconds"] > 0

    cancelled = jobs_api.delete(queued, headers=ALICE)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    start = time.monotonic()
    stopped = jobs_api.delete(long, headers=ALICE).json()
    assert stopped["status"] == "cancelled" and 0 < stopped["progress"]["done"] < 3000
    assert time.monotonic() - start < 2  # its worker stopped it (tests/service/test_compute.py)
    assert jobs_api.delete(long, headers=ALICE).json()["status"] == "cancelled"  # idempotent
    no_result = assert_problem(jobs_api.get(f"{long}/result", headers=ALICE), 409)
    assert "cancelled" in no_result["detail"]
    # The turn the cancelled job held is free again.
    after = submit(jobs_api, "/v1/test/burn?steps=2&seconds_each=0.0").headers["location"]
    assert finished(jobs_api, after)["status"] == "succeeded"


def test_a_job_is_its_owners_alone(jobs_api):
    location = submit(jobs_api, "/v1/test/burn?steps=1&seconds_each=0").headers["location"]
    job_id = location.rsplit("/", 1)[1]
    assert finished(jobs_api, location)["owner"] == "alice"
    for method, url in [("GET", location), ("GET", f"{location}/result"),
                        ("GET", f"{location}/events"), ("DELETE", location)]:
        assert_problem(jobs_api.request(method, url, headers=BOB), 404)
    assert job_id not in [j["id"] for j in jobs_api.get("/v1/jobs", headers=BOB).json()["jobs"]]
    assert job_id in [j["id"] for j in jobs_api.get("/v1/jobs", headers=ALICE).json()["jobs"]]
    assert_problem(jobs_api.get("/v1/jobs/no-such-job", headers=ALICE), 404)


def _events(text: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        found.append((lines["event"], json.loads(lines["data"])))
    return found


def test_a_finished_job_keeps_its_final_progress(jobs_api):
    """The worker's last report, not whatever its status poll saw 0.25 s earlier."""
    location = submit(jobs_api, "/v1/test/burn?steps=30&seconds_each=0.02").headers["location"]
    progress = finished(jobs_api, location)["progress"]
    assert (progress["done"], progress["total"], progress["fraction"]) == (30, 30, 1.0)


def test_events_stream_progress_and_the_final_status(jobs_api):
    # progress reaches the job from its worker every 0.25 s (scheduler.STATUS_SECONDS): ~2 s of work
    location = submit(jobs_api, "/v1/test/burn?steps=40&seconds_each=0.05").headers["location"]
    response = jobs_api.get(f"{location}/events", headers=ALICE)  # read to its end: the job's end
    assert response.headers["content-type"].startswith("text/event-stream")
    events = _events(response.text)
    assert events[0][0] == "status" and events[0][1]["status"] in ("queued", "running")
    assert events[-1] == ("status", events[-1][1]) and events[-1][1]["status"] == "succeeded"
    done = [data["done"] for kind, data in events if kind == "progress"]
    assert len(done) >= 2 and done == sorted(done) and done[-1] > done[0]


def test_listing_newest_first_pages_and_filters(jobs_api):
    made = [submit(jobs_api, "/v1/test/burn?steps=1&seconds_each=0", headers=BOB).json()["id"]
            for _ in range(3)]
    for job_id in made:
        finished(jobs_api, f"/v1/jobs/{job_id}", headers=BOB)
    first = jobs_api.get("/v1/jobs?limit=2", headers=BOB).json()
    assert [j["id"] for j in first["jobs"]] == made[::-1][:2]
    second = jobs_api.get(first["next"], headers=BOB).json()
    assert [j["id"] for j in second["jobs"]][:1] == made[:1]
    assert jobs_api.get("/v1/jobs?status=failed", headers=BOB).json()["jobs"] == []
    succeeded = jobs_api.get("/v1/jobs?status=succeeded&status=failed", headers=BOB).json()["jobs"]
    assert {j["id"] for j in succeeded} >= set(made)
    assert_problem(jobs_api.get("/v1/jobs?cursor=nonsense", headers=BOB), 422)
    assert_problem(jobs_api.get("/v1/jobs?status=finished", headers=BOB), 422)


def test_info_says_how_jobs_run(jobs_api):
    info = jobs_api.get("/v1/info", headers=ALICE).json()
    assert info["jobs"]["limits_in_place_of"] == {"max_wall_seconds": "max_job_seconds"}
    assert info["limits"]["max_job_seconds"] == 3600.0
    assert info["jobs"]["max_running_jobs"] == 1 and info["jobs"]["result_ttl_seconds"] == 7 * 86400


def test_quotas_of_an_owner():
    with TestClient(make_app(api_keys=KEYS, max_pending_jobs_per_owner=1)) as client:
        wait_ready(client)
        first = submit(client, "/v1/test/burn?steps=200&seconds_each=0.01").headers["location"]
        busy = assert_problem(client.post("/v1/test/burn", headers={**ALICE, **ASYNC}), 429)
        assert "max_pending_jobs_per_owner" in busy["detail"] and busy["retry_after"] >= 0
        submit(client, "/v1/test/burn?steps=1&seconds_each=0", headers=BOB)  # bob is not refused
        client.delete(first, headers=ALICE)
    small = make_app(api_keys=KEYS, limits=Limits(max_job_bytes_per_owner=100))
    with TestClient(small) as client:
        wait_ready(client)
        body = {"expression": "x", "at": {"x": 1.0}}
        location = submit(client, "/v1/gradient", json=body).headers["location"]
        failed = finished(client, location)  # its answer does not fit beside the request
        assert failed["status"] == "failed" and failed["error"]["limit"] == "max_job_bytes_per_owner"
        over = assert_problem(client.post("/v1/gradient", json=body, headers={**ALICE, **ASYNC}), 413)
        assert over["limit"] == "max_job_bytes_per_owner"


def test_finished_jobs_expire_after_their_ttl():
    folder = data_dir()
    with TestClient(make_app(data_dir=folder, job_result_ttl=0.5)) as client:
        wait_ready(client)
        location = client.post("/v1/test/burn?steps=1&seconds_each=0", headers=ASYNC).headers["location"]
        document = finished(client, location, headers={})
        assert document["expires"] > document["finished"]
        until(lambda: client.get(location).status_code == 404, seconds=10)
        assert_problem(client.get(f"{location}/result"), 404)
        until(lambda: not list((folder / "jobs" / "answers").iterdir()), seconds=10)  # swept


def test_a_stop_keeps_unfinished_jobs_and_the_next_start_runs_them():
    folder = data_dir()
    with TestClient(make_app(data_dir=folder, api_keys=KEYS)) as client:
        wait_ready(client)
        long = submit(client, "/v1/test/burn?steps=100000&seconds_each=0.01").headers["location"]
        until(lambda: client.get(long, headers=ALICE).json()["status"] == "running")
        queued = submit(client, "/v1/gradient", json={"expression": "x**2", "at": {"x": 3.0}})
        queued = queued.headers["location"]
    # The same data folder; two turns, so that the long job does not hold the queued one up.
    with TestClient(make_app(data_dir=folder, api_keys=KEYS, max_running_jobs=2)) as client:
        wait_ready(client)
        assert finished(client, queued)["status"] == "succeeded"
        assert client.get(f"{queued}/result", headers=ALICE).json()["gradient"]["x"] == 6.0
        again = until(lambda: (d := client.get(long, headers=ALICE).json())["status"] == "running" and d)
        assert again["attempts"] == 1 and again["owner"] == "alice"  # a clean stop is no attempt
        assert_problem(client.get(long, headers=BOB), 404)
        client.delete(long, headers=ALICE)


def test_a_crash_runs_a_running_job_once_more_then_fails_it():
    """What `kill -9` leaves (jobs stored as running), as the next start finds it."""
    folder = data_dir()
    body = json.dumps({"expression": "x**2", "at": {"x": 3.0}}).encode()
    request = {"method": "POST", "path": "/v1/gradient", "headers": {"content-type": "application/json"}}

    async def crashed() -> None:
        store = SqliteJobStore(folder / "jobs")
        await store.open()
        for job_id, attempts in (("once", 1), ("twice", 2)):
            record = JobRecord(id=job_id, owner="alice", created=time.time(), status="running",
                               attempts=attempts, request=StoredRequest(**request))
            await store.create(record, body)
            await store.update(job_id, status="running", attempts=attempts)
        await store.close()

    asyncio.run(crashed())
    with TestClient(make_app(data_dir=folder, api_keys=KEYS)) as client:
        wait_ready(client)
        rerun = finished(client, "/v1/jobs/once")
        assert rerun["status"] == "succeeded" and rerun["attempts"] == 2
        assert client.get("/v1/jobs/once/result", headers=ALICE).json()["gradient"]["x"] == 6.0
        given_up = client.get("/v1/jobs/twice", headers=ALICE).json()
        assert given_up["status"] == "failed" and given_up["error"]["status"] == 503
        assert given_up["error"]["type"].endswith("/job-interrupted")
        assert "2 times" in given_up["error"]["detail"]


def test_the_queue_is_fair_between_owners():
    manager = JobManager(Settings(max_running_jobs=1, data_dir=data_dir()))
    loop = asyncio.new_event_loop()
    try:
        for i, owner in enumerate(["alice"] * 4 + ["bob", "carol"]):
            manager._waiting[f"{owner}-{i}"] = (owner, float(i), loop.create_future())
        manager._running = {"alice-x": "alice"}
        manager._last_start = {"alice": 1}
        # alice runs one already: bob and carol go first, then every owner in turn
        assert manager._start_order() == ["bob-4", "carol-5", "alice-0", "alice-1", "alice-2", "alice-3"]
    finally:
        loop.close()


def test_the_preference_and_the_accept_header_are_read_as_the_rfcs_say():
    def scope(*values: bytes) -> dict[str, Any]:
        return {"headers": [(b"prefer", v) for v in values]}

    assert prefers_async(scope(b"respond-async"))
    assert prefers_async(scope(b"return=minimal, Respond-Async; wait=10"))
    assert prefers_async(scope(b"handling=lenient", b"respond-async"))
    assert not prefers_async(scope(b"return=representation")) and not prefers_async(scope())
    assert acceptable(None, "image/png") and acceptable("*/*", "image/png")
    assert acceptable("image/*", "image/png") and acceptable("text/html, image/png;q=0.5", "image/png")
    assert not acceptable("application/json", "image/png")
    assert not acceptable("image/png;q=0", "image/png")


def test_jobs_by_status_for_metrics(jobs_api):
    manager = jobs_api.app.state.jobs
    location = submit(jobs_api, "/v1/test/burn?steps=1&seconds_each=0").headers["location"]
    finished(jobs_api, location)
    listed = {status: len(jobs_api.get(f"/v1/jobs?limit=500&status={status}", headers=ALICE).json()["jobs"])
              + len(jobs_api.get(f"/v1/jobs?limit=500&status={status}", headers=BOB).json()["jobs"])
              for status in ("queued", "running", "succeeded", "failed", "cancelled")}
    assert until(lambda: manager.jobs_by_status() == listed)
    assert listed["succeeded"] >= 1 and set(listed) == set(manager.jobs_by_status())
