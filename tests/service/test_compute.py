"""The compute runner: jobs off the event loop, the busy queue's 429, the wall time's 503, queued
jobs past their deadline."""

from __future__ import annotations

import asyncio
import time

import httpx
from fastapi.testclient import TestClient

from labcrunch_service.compute import Runner
from labcrunch_service.errors import ComputeTimeout
from labcrunch_service.settings import Limits
from tests.conftest import assert_problem
from tests.helpers import tasks
from tests.helpers.apps import make_app


def test_compute_runs_off_the_event_loop_and_reports_time():
    app = make_app()
    with TestClient(app) as client:
        out = client.post("/v1/test/slow", params={"seconds": 0.05}).json()
    assert out["elapsed_ms"] >= 45


def test_busy_queue_answers_429_with_retry_after():
    """One slot, no queue: of three concurrent slow jobs, one runs and two are refused."""
    app = make_app(max_concurrent_jobs=1, max_queued_jobs=0, retry_after_seconds=3)

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await asyncio.gather(
                *[client.post("/v1/test/slow", params={"seconds": 0.5}) for _ in range(3)]
            )

    responses = asyncio.run(scenario())
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 429, 429]
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.headers["retry-after"] == "3"
    body = assert_problem(refused, 429)
    assert "compute" in body["detail"]


def test_wall_time_limit_answers_503():
    app = make_app(limits=Limits(max_wall_seconds=0.2))
    with TestClient(app) as client:
        body = assert_problem(client.post("/v1/test/slow", params={"seconds": 0.6}), 503)
    assert "max_wall_seconds" in body["detail"]


def test_a_job_still_queued_at_its_deadline_never_runs():
    runner = Runner(1, 1, wall_seconds=0.3)
    tasks.RECORDED.clear()

    async def scenario():
        first = asyncio.ensure_future(runner.run(tasks.SLEEP, 0.6))  # ignores the deadline
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(runner.run(tasks.RECORD, "queued"))
        return await asyncio.gather(first, queued, return_exceptions=True)

    outcomes = asyncio.run(scenario())
    assert all(isinstance(o, ComputeTimeout) for o in outcomes), outcomes
    time.sleep(0.7)
    assert tasks.RECORDED == []  # dropped with its 503, not run afterwards for nobody
    assert runner.in_flight == 0
    runner.shutdown()


def test_wall_time_counts_from_admission():
    """A job that waited in the queue stops (check_deadline) when its request answers 503, not a
    whole wall time after it started."""
    runner = Runner(1, 1, wall_seconds=1.0)
    tasks.RAN_FOR.clear()

    async def scenario():
        first = asyncio.ensure_future(runner.run(tasks.SLEEP, 0.7))
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(runner.run(tasks.SPIN_AND_TIME))
        return await asyncio.gather(first, queued, return_exceptions=True)

    outcomes = asyncio.run(scenario())
    assert not isinstance(outcomes[0], Exception) and isinstance(outcomes[1], ComputeTimeout)
    time.sleep(0.2)
    assert tasks.RAN_FOR and tasks.RAN_FOR[0] < 0.8, tasks.RAN_FOR  # ~0.35 s: what was left of its wall time
    runner.shutdown()
