"""The compute layer as an app sees it: ``await runner.run(TASK, *args, **kwargs)``.

A :class:`Runner` belongs to one app: it holds the app's wall time, quotas and memory budget and
submits jobs to the pool of worker processes (:mod:`scheduler`) that it shares with every app of
the process whose worker settings agree. Routes get it bound to the request's owner
(:class:`OwnedRunner`, through ``http.deps.RunnerDep``), so a router's call is the same as when
compute ran in threads. The wall time counts from admission (queue wait included): past it the
request answers 503 and the job is stopped (its worker ended if it does not stop by itself).
The answer's ``Server-Timing`` header says how long the job waited (``queue``), the worker's
round trip (``worker``: the hop to the worker process and back, and the task) and the task alone
(``compute``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import threading
from typing import Any

from labcrunch_service.compute import job_context
from labcrunch_service.compute import scheduler as pool
from labcrunch_service.compute.scheduler import Job, PoolSpec, Quota, Scheduler, payload_bytes
from labcrunch_service.compute.tasks import Task, Timed
from labcrunch_service.compute.worker import WorkerSpec
from labcrunch_service.errors import ShuttingDown
from labcrunch_service.http.context import record_timings, request_id_var
from labcrunch_service.settings import Settings


def pool_spec(settings: Settings, warmups: tuple[str, ...] = ()) -> PoolSpec:
    """The workers ``settings`` ask for (API keys stay in the HTTP process)."""
    return PoolSpec(address=settings.ray_address, cpu_workers=settings.cpu_workers,
                    gpu_workers_per_device=settings.gpu_workers_per_device,
                    worker=WorkerSpec(settings.model_copy(update={"api_keys": []}), warmups),
                    shared_memory_bytes=settings.shared_memory_bytes)


class Runner:
    """Runs tasks for one app on the shared workers, under that app's limits."""

    def __init__(self, settings: Settings, warmups: tuple[str, ...] = ()) -> None:
        self.settings = settings
        self.spec = pool_spec(settings, warmups)
        self.quota = Quota(max_queued_jobs=settings.max_queued_jobs,
                           max_queued_per_owner=settings.max_queued_per_owner,
                           max_running_per_owner=settings.max_running_per_owner,
                           retry_after=settings.retry_after_seconds,
                           worker_memory_bytes=settings.worker_memory_bytes)
        self.wall_seconds = settings.limits.max_wall_seconds
        self._scheduler: Scheduler | None = None
        self._lock = threading.Lock()

    @property
    def scheduler(self) -> Scheduler:
        """The pool, joined on first use (the app's lifespan joins it at start-up)."""
        with self._lock:
            if self._scheduler is None:
                self._scheduler = pool.acquire(self.spec)
            return self._scheduler

    def close(self) -> None:
        """Leave the pool (the last app to leave stops it)."""
        with self._lock:
            scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            pool.release(scheduler)

    def submit(self, task: Task, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None, *,
               owner: str, wall_seconds: float | None = None,
               limit_name: str = "max_wall_seconds", quota: Quota | None = None) -> Job:
        """Queue ``task(*args, **kwargs)`` for ``owner`` with ``wall_seconds`` (default
        limits.max_wall_seconds, named ``limit_name`` in its 503) under ``quota`` (default the
        app's); Busy (429) over a quota. The :class:`Job` gives its result, progress, cancel."""
        return self.scheduler.submit(
            task, args, kwargs or {}, owner=owner, quota=quota or self.quota,
            wall_seconds=self.wall_seconds if wall_seconds is None else wall_seconds,
            limit_name=limit_name, request_id=request_id_var.get())

    async def run_for(self, owner: str, task: Task, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> Timed[Any]:
        """Run ``task`` for ``owner`` and wait for it: its result, or the error it answered.

        A request that runs as a job (:mod:`job_context`) waits for its turn in the jobs queue
        first (which bounds it: no request quota here), runs under the job's own wall time, and
        hands the job its :class:`Job` (progress, cancel)."""
        submit: dict[str, Any] = {"owner": owner}
        as_job = job_context.current()
        if as_job is not None:
            await as_job.admitted()
            submit |= {"wall_seconds": as_job.wall_seconds, "limit_name": as_job.limit_name,
                       "quota": dataclasses.replace(self.quota, max_queued_jobs=sys.maxsize,
                                                    max_queued_per_owner=sys.maxsize)}
        if payload_bytes((args, kwargs)) > pool.INLINE_BYTES:  # copied into shared memory: off the loop
            job = await asyncio.to_thread(self.submit, task, args, kwargs, **submit)
        else:
            job = self.submit(task, args, kwargs, **submit)
        if as_job is not None:
            as_job.attach(job)
        try:
            timed = await asyncio.wrap_future(job.future)
        except asyncio.CancelledError:
            # The server stopped waiting (its grace period at shutdown is over): stop the job
            # and answer a problem rather than let the cancellation end as a logged 500.
            job.cancel()
            raise ShuttingDown("The service is shutting down; this computation was stopped. "
                               "Retry shortly.", headers={"Retry-After": "5"}) from None
        if as_job is None and job.started is not None and job.finished is not None:
            # Server-Timing: the wait for a worker, the worker's round trip, the task itself
            record_timings(queue=(job.started - job.created) * 1e3,
                           worker=(job.finished - job.started) * 1e3, compute=timed.elapsed_ms)
        return timed

    def bound(self, owner: str) -> OwnedRunner:
        return OwnedRunner(self, owner)

    @property
    def in_flight(self) -> int:
        """Jobs queued or running in the pool, every app's."""
        snapshot = self.scheduler.snapshot()
        return sum(snapshot["queued"].values()) + sum(snapshot["running"].values())


class OwnedRunner:
    """A :class:`Runner` bound to one owner: what a route gets as ``RunnerDep``."""

    def __init__(self, runner: Runner, owner: str) -> None:
        self.runner = runner
        self.owner = owner

    async def run(self, task: Task, /, *args: Any, **kwargs: Any) -> Timed[Any]:
        """Run ``task``'s function with ``(*args, **kwargs)`` in a worker; return its result,
        compute time and devices. Raises the error the function raised (same kind and fields)."""
        return await self.runner.run_for(self.owner, task, args, kwargs)
