"""The compute layer on real local Ray workers (the session's shared pool): jobs run in worker
processes; errors, large arrays and progress cross back intact; wall time and memory are
enforced by ending the worker, which is replaced; a crashed worker fails only its job (after one
retry elsewhere); owners are served round-robin and refused by their own quotas."""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import mmap
import os
import signal
import time

import httpx
import numpy as np
import psutil
import pytest
import ray
from fastapi.testclient import TestClient

from labcrunch_service.compute import Runner, exchange, job_context
from labcrunch_service.compute.exchange import Packed
from labcrunch_service.compute.scheduler import payload_bytes
from labcrunch_service.compute.tasks import WorkerError
from labcrunch_service.errors import Busy, Cancelled, ComputeTimeout, WorkerLost
from labcrunch_service.settings import Limits, Settings
from tests.conftest import assert_problem, serving
from tests.helpers import tasks
from tests.helpers.apps import make_app


@pytest.fixture
def pool(api):
    """The session's workers, all warm and idle before and after the test (a worker a test
    ended is back before the next test starts)."""
    scheduler = api.app.state.runner.scheduler
    scheduler.wait_idle()
    yield scheduler
    scheduler.wait_idle()


def runner(**settings) -> Runner:
    """A runner on the session's workers with these settings (quotas, wall time, memory)."""
    return Runner(Settings(warmup=False, load_tensorflow=False, **settings))


def wait_for(condition, seconds: float = 30.0, every: float = 0.02):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not true within {seconds:g} s: {condition}")


def ended_at(process: psutil.Process) -> float:
    """When ``process`` stopped using the CPU: it is gone, or its CPU time stopped growing."""
    last = None
    while True:
        now = time.monotonic()
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return now
            used = sum(process.cpu_times()[:2])
        except psutil.NoSuchProcess:
            return now
        if last is not None and used == last[1]:
            return last[0]
        last = (now, used)
        time.sleep(0.1)


def test_a_task_runs_in_a_worker_process_and_reports_time(pool):
    app = make_app()
    with TestClient(app) as client:
        out = client.post("/v1/test/slow", params={"seconds": 0.05}).json()
    assert out["elapsed_ms"] >= 45
    job = runner().submit(tasks.PID, owner="test")
    assert job.result(60).result in {w.pid for w in pool.workers} - {os.getpid()}


def test_domain_errors_cross_back_with_their_kind_and_fields(pool, api):
    """A domain error raised in a worker answers the same problem as before (422 with loc)."""
    body = assert_problem(api.post("/v1/gradient", json={"expression": "x + y", "at": {"x": 1.0}}), 422)
    assert body["errors"][0]["loc"] == ["body", "at", "y"]
    job = runner().submit(tasks.CRASH, ("unexpected",), owner="test")
    with pytest.raises(WorkerError, match="ValueError: unexpected"):
        job.result(60)


def test_large_arrays_reach_the_worker_through_shared_memory_read_only(pool):
    """Arrays over the inline size go into a block of shared memory that the worker maps, not
    through the call: numpy hands it read-only views (domain code never writes its inputs)."""
    big, small = np.arange(1_000_000, dtype=np.float64), np.arange(10, dtype=np.float64)
    job = runner().submit(tasks.INPUTS, (big,), {"small": small}, owner="test")
    assert isinstance(job.payload, Packed)
    assert job.result(60).result == [(False, big.nbytes), (False, small.nbytes)]


def scaled(column: np.ndarray, factor: float, seconds: float = 0.0) -> dict[str, np.ndarray]:
    time.sleep(seconds)
    return {"scaled": column * factor, "pid": np.array(os.getpid())}


def test_an_answer_comes_back_through_the_block_which_is_then_lent_again(pool):
    """The answer's large arrays come back as views of the job's block (no object store); once
    nothing refers to them the block serves the next job: the pool keeps its blocks."""
    column = np.linspace(0.0, 1.0, 1_000_000)
    answer = runner().submit(tasks.CALL, (scaled, column, 3.0), owner="test").result(60).result
    np.testing.assert_array_equal(answer["scaled"], column * 3.0)
    assert isinstance(answer["scaled"].base.base.obj, mmap.mmap)  # a view of the block
    held = pool.exchange.describe()
    del answer
    gc.collect()
    assert pool.exchange.describe()["free_blocks"] == held["free_blocks"] + 1
    for factor in (4.0, 5.0):
        again = runner().submit(tasks.CALL, (scaled, column, factor), owner="test").result(60).result
        np.testing.assert_array_equal(again["scaled"], column * factor)
        del again
        gc.collect()
    assert pool.exchange.describe()["blocks"] == held["blocks"]
    assert pool.exchange.describe()["jobs"] == held["jobs"] + 2


def test_a_block_whose_job_ran_past_its_deadline_is_never_lent_again(pool):
    """Its worker may still be writing into it: the file goes, and the next job gets another."""
    column = np.linspace(0.0, 1.0, 1_000_000)
    job = runner(limits=Limits(max_wall_seconds=0.5)).submit(tasks.CALL, (scaled, column, 2.0, 3.0),
                                                             owner="test")
    block = job.payload.block
    with pytest.raises(ComputeTimeout):
        job.result(30)
    assert not os.path.exists(os.path.join(exchange.SHM_DIR, block))
    pool.wait_idle()
    after = runner().submit(tasks.CALL, (scaled, column, 2.0), owner="test")
    assert after.payload.block != block
    np.testing.assert_array_equal(after.result(60).result["scaled"], column * 2.0)


def test_a_job_whose_worker_was_lost_runs_again_with_its_arrays_out_of_the_block(pool):
    """A worker Ray calls lost may not be gone yet, and could still write into the block: the
    retry gets the arrays copied into the call, and the block is never lent again."""
    column = np.linspace(0.0, 1.0, 1_000_000)
    job = runner().submit(tasks.CALL, (scaled, column, 7.0, 1.5), owner="test")
    block = job.payload.block
    wait_for(lambda: job.state == "running" and job.worker.pid)
    first = job.worker.pid
    os.kill(first, signal.SIGKILL)
    answer = job.result(60).result
    assert int(answer["pid"]) != first and job.attempts == 2
    np.testing.assert_array_equal(answer["scaled"], column * 7.0)
    assert not os.path.exists(os.path.join(exchange.SHM_DIR, block))


def test_a_refused_job_gives_its_block_back(pool):
    limited = runner(max_queued_per_owner=0)
    holders = [limited.submit(tasks.SLEEP, (0.5,), owner="holder") for _ in pool.workers]
    before = pool.exchange.describe()
    with pytest.raises(Busy):
        limited.submit(tasks.CALL, (scaled, np.ones(1_000_000), 2.0), owner="holder")
    after = pool.exchange.describe()
    assert after["jobs"] == before["jobs"] + 1  # it had a block ...
    assert (after["blocks"], after["free_blocks"]) in {(before["blocks"], before["free_blocks"]),
                                                       (before["blocks"] + 1, before["free_blocks"] + 1)}
    for job in holders:  # ... which is free again: lent to the next job, no new one made
        job.result(30)


def test_payload_bytes_counts_arrays_and_numbers_without_walking_them():
    assert payload_bytes(((np.zeros(4), "text", None), {"x": [1.0] * 10, "n": 3})) == 32 + 80
    assert payload_bytes({"rows": [[1.0, 2.0], [3, 4]], "empty": [], "names": ["a", "b"]}) == 32
    assert payload_bytes(([np.ones(2)] * 3,)) == 48


def hold(seconds: float, points: list[float]) -> int:
    time.sleep(seconds)
    return len(points)


def test_a_large_json_batch_goes_through_the_object_store(pool):
    """A list of 10⁵ numbers (a JSON body's points) is sent like an array of that size: put into
    the object store once, off the caller's event loop, not inline in the call."""
    points = [float(i) for i in range(100_000)]
    job = runner().submit(tasks.CALL, (hold, 0.3, points), owner="test")
    assert isinstance(job.payload, ray.ObjectRef)
    assert job.result(60).result == 100_000
    small = runner().submit(tasks.CALL, (hold, 0.3, points[:100]), owner="test")
    assert isinstance(small.payload, tuple)
    assert small.result(60).result == 100


def test_progress_is_read_while_the_job_runs(pool):
    job = runner().submit(tasks.COUNTED, (20, 0.1), owner="test")
    seen = wait_for(lambda: job.progress() and 0 < job.progress()["done"] < 20 and job.progress())
    assert seen["total"] == 20 and seen["unit"] == "steps" and 0 < seen["fraction"] < 1
    assert job.result(60).result == 20
    assert job.queue_position() is None and job.state == "succeeded"


def test_wall_time_ends_the_worker_within_2_s_and_the_service_keeps_serving(pool):
    """A job that ignores its deadline (pure Python, holding the GIL) answers 503 at the
    deadline; its worker's CPU use ends within 2 s; the other worker serves meanwhile, and the
    ended one comes back."""
    kills = {slot.name: slot.kills["deadline"] for slot in pool.workers}
    timed = runner(limits=Limits(max_wall_seconds=1.0))
    job = timed.submit(tasks.BURN, (60,), owner="test")
    wait_for(lambda: job.state == "running")
    slot, old_pid = job.worker, job.worker.pid
    process = psutil.Process(old_pid)
    with pytest.raises(ComputeTimeout, match="max_wall_seconds"):
        job.result(30)
    assert ended_at(process) - job.deadline < 2.0
    other = runner().submit(tasks.PID, owner="someone else")
    assert other.result(30).result != old_pid  # served while the ended worker restarts
    wait_for(lambda: slot.state == "idle" and slot.pid not in (None, old_pid), seconds=120)
    assert slot.kills["deadline"] == kills[slot.name] + 1


def test_a_cooperative_job_stops_itself_at_its_deadline_without_a_restart(pool):
    """check_deadline stops the loop inside the worker: no process is ended."""
    kills = dict(pool.kills)
    job = runner(limits=Limits(max_wall_seconds=0.3)).submit(tasks.SPIN, owner="test")
    with pytest.raises(ComputeTimeout):
        job.result(30)
    wait_for(lambda: job.worker.job is None)
    assert dict(pool.kills) == kills


def test_a_job_still_queued_at_its_deadline_never_runs(pool, tmp_path):
    """Both workers busy: a job whose wall time ends while it waits answers 503 and is dropped,
    not run afterwards for nobody."""
    busy = [runner().submit(tasks.SLEEP, (1.0,), owner="busy") for _ in pool.workers]
    marker = tmp_path / "ran"
    queued = runner(limits=Limits(max_wall_seconds=0.3)).submit(
        tasks.CALL, (marker.touch,), owner="late")
    with pytest.raises(ComputeTimeout):
        queued.result(30)
    for job in busy:
        job.result(30)
    pool.wait_idle()
    assert not marker.exists()


def test_wall_time_counts_from_admission(pool):
    """A job that waited in the queue stops at its own deadline (admission + wall time), not a
    whole wall time after it started."""
    busy = [runner().submit(tasks.SLEEP, (0.6,), owner="busy") for _ in pool.workers]
    waited = runner(limits=Limits(max_wall_seconds=1.0)).submit(tasks.SPIN, owner="late")
    with pytest.raises(ComputeTimeout):
        waited.result(30)
    assert waited.started - waited.created >= 0.5  # it did wait for a worker
    assert waited.finished - waited.created < 1.5
    for job in busy:
        job.result(30)


def test_memory_over_the_budget_ends_the_worker_and_names_the_limit(pool):
    """A request within every other limit (a 10⁶-point order-2 gradient of four variables,
    ~300 MB of arrays) pushes its worker past worker_memory_bytes: 413 naming the limit; that
    worker is replaced, the other is untouched."""
    rss = max(w.rss_bytes or psutil.Process(w.pid).memory_info().rss for w in pool.workers)
    budget = rss + 100 * 2**20
    restarts = {w.name: w.restarts for w in pool.workers}
    buffer = io.BytesIO()
    np.savez(buffer, x=np.linspace(0.1, 3.0, 1_000_000), y=np.float64(1.0), z=np.float64(2.0),
             w=np.float64(0.5))
    with serving(worker_memory_bytes=budget) as client:
        response = client.post("/v1/gradient", params={"expression": "sin(x) * y + z * w", "order": 2},
                               content=buffer.getvalue(), headers={"Content-Type": "application/x-npz"})
    body = assert_problem(response, 413)
    assert body["limit"] == "worker_memory_bytes" and body["maximum"] == budget and body["value"] > budget
    pool.wait_idle()
    ended = [w for w in pool.workers if w.restarts != restarts[w.name]]
    assert [w.kills["memory"] for w in ended] == [1]  # one worker ended, for memory


def test_a_worker_killed_mid_job_is_replaced_and_its_job_retried_once(pool):
    """kill -9 of a busy worker: the job runs again on another worker and succeeds; killed
    again there, it answers 503 'worker lost'. Both workers come back."""
    job = runner().submit(tasks.BURN, (2.0,), owner="test")
    wait_for(lambda: job.state == "running" and job.worker.pid)
    first = job.worker
    os.kill(first.pid, signal.SIGKILL)
    assert job.result(60).result != first.pid  # the retry ran elsewhere
    assert job.attempts == 2

    lost = runner().submit(tasks.BURN, (30.0,), owner="test")
    for attempt in (1, 2):
        wait_for(lambda attempt=attempt: lost.attempts == attempt and lost.state == "running"
                 and lost.worker.pid and lost.worker.state == "busy", seconds=120)
        os.kill(lost.worker.pid, signal.SIGKILL)
    with pytest.raises(WorkerLost) as error:
        lost.result(60)
    assert error.value.status == 503
    pool.wait_idle()
    assert all(w.state == "idle" for w in pool.workers)


def test_cancel_ends_a_running_job_within_2_s_and_drops_a_queued_one(pool):
    holders = [runner().submit(tasks.BURN, (60 if i == 0 else 1.5,), owner=f"owner-{i}")
               for i in range(len(pool.workers))]
    wait_for(lambda: all(j.state == "running" for j in holders))
    queued = runner().submit(tasks.SLEEP, (0.01,), owner="queued")
    assert queued.queue_position() == 0 and queued.cancel()
    with pytest.raises(Cancelled):
        queued.result(1)
    process = psutil.Process(holders[0].worker.pid)
    asked = time.monotonic()
    assert holders[0].cancel() and not holders[0].cancel()  # a second cancel does nothing
    with pytest.raises(Cancelled):
        holders[0].result(5)
    assert ended_at(process) - asked < 2.0
    assert pool.kills["cancel"] >= 1
    for job in holders[1:]:
        job.result(30)


def test_a_flooding_owner_delays_another_by_at_most_one_job(pool):
    """Owner A keeps 16 jobs queued; B's request starts on the next free worker, before every
    job of A's that was waiting when it came."""
    flood = runner(max_queued_per_owner=16)
    a_jobs = [flood.submit(tasks.SLEEP, (0.3,), owner="a") for _ in range(len(pool.workers) + 16)]
    wait_for(lambda: sum(j.state == "running" for j in a_jobs) == len(pool.workers))
    waiting = [j for j in a_jobs if j.state == "queued"]
    b_job = flood.submit(tasks.SLEEP, (0.01,), owner="b")
    b_job.result(30)
    for job in a_jobs:
        job.result(60)
    assert all(b_job.started <= j.started for j in waiting)
    assert b_job.started - b_job.created < 0.3 + 0.25  # at most one of A's jobs (0.3 s) + slack


def test_quotas_refuse_the_owner_over_them_and_nobody_else(pool):
    limited = runner(max_queued_per_owner=2, max_queued_jobs=3, retry_after_seconds=7)
    holders = [limited.submit(tasks.SLEEP, (1.0,), owner="holder") for _ in pool.workers]
    a = [limited.submit(tasks.SLEEP, (0.01,), owner="a") for _ in range(2)]
    with pytest.raises(Busy) as refused:
        limited.submit(tasks.SLEEP, (0.01,), owner="a")
    assert refused.value.headers["Retry-After"] == "7" and "max_queued_per_owner" in refused.value.detail
    b = limited.submit(tasks.SLEEP, (0.01,), owner="b")  # A's quota is A's alone
    with pytest.raises(Busy) as full:
        limited.submit(tasks.SLEEP, (0.01,), owner="c")  # all queues together: 3
    assert "max_queued_jobs" in full.value.detail
    for job in [*holders, *a, b]:
        job.result(30)


def test_max_running_per_owner_keeps_workers_for_others(pool):
    capped = runner(max_running_per_owner=1)
    jobs = [capped.submit(tasks.SLEEP, (0.3,), owner="a") for _ in range(2)]
    wait_for(lambda: jobs[0].state == "running")
    time.sleep(0.1)
    assert jobs[1].state == "queued"  # a worker is free, but A may run one at a time
    other = capped.submit(tasks.PID, owner="b")
    other.result(30)
    jobs[1].result(30)
    assert other.started < jobs[1].started


def test_a_busy_owner_gets_429_with_retry_after_over_http(pool):
    """Through HTTP, owners by API key: alice's third concurrent request is refused, bob's not."""
    app = make_app(max_running_per_owner=1, max_queued_per_owner=1, retry_after_seconds=3,
                   api_keys={"alice": "ka", "bob": "kb"})

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            alice = [client.post("/v1/test/slow", params={"seconds": 0.5}, headers={"X-API-Key": "ka"})
                     for _ in range(3)]
            bob = client.post("/v1/test/slow", params={"seconds": 0.05}, headers={"X-API-Key": "kb"})
            return await asyncio.gather(*alice, bob)

    with TestClient(app):  # lifespan: joins the pool
        *alice, bob = asyncio.run(scenario())
    assert sorted(r.status_code for r in alice) == [200, 200, 429]
    refused = next(r for r in alice if r.status_code == 429)
    assert refused.headers["retry-after"] == "3"
    assert "'alice'" in assert_problem(refused, 429)["detail"]
    assert bob.status_code == 200


def test_a_job_finishing_after_its_503_logs_no_error(pool, caplog):
    """The request answers 503 at its wall time; the job returns later (it ignores the deadline)
    and nothing is logged as an error (no 'Future exception was never retrieved')."""
    app = make_app(limits=Limits(max_wall_seconds=0.3))
    with caplog.at_level(logging.WARNING), TestClient(app) as client:
        body = assert_problem(client.post("/v1/test/slow", params={"seconds": 0.6}), 503)
        assert "max_wall_seconds" in body["detail"]
        time.sleep(0.5)
        gc.collect()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_a_request_run_as_a_job_waits_its_turn_and_runs_under_the_jobs_wall_time(pool):
    """The seam with the jobs API (compute.job_context): the job is admitted first, its handle
    (progress, cancel) is attached, and its own wall time applies, named in the 503."""

    class Job:
        wall_seconds, limit_name = 0.5, "max_job_seconds"

        def __init__(self) -> None:
            self.events: list[str] = []
            self.handle = None

        async def admitted(self) -> None:
            self.events.append("admitted")

        def attach(self, handle) -> None:
            self.events.append("attached")
            self.handle = handle

    job = Job()

    async def scenario():
        with job_context.running_as(job):
            return await runner().run_for("someone", tasks.SPIN, (), {})

    with pytest.raises(ComputeTimeout, match=r"limits\.max_job_seconds"):
        asyncio.run(scenario())
    assert job.events == ["admitted", "attached"]
    assert callable(job.handle.progress) and callable(job.handle.cancel)
    assert job.handle.wall_seconds == 0.5
