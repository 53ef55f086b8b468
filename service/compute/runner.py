"""The one place where compute runs: off the event loop, bounded, timed.

At most ``max_concurrent`` jobs run at once in a thread pool and at most ``max_queued`` more
wait; a request beyond that is refused at once with :class:`~labcrunch_service.errors.Busy` (429 +
Retry-After) instead of piling up. The wall time counts from admission (queue wait included):
past it the request answers 503, a job still waiting is dropped, and a running job's thread,
which cannot be killed, keeps its slot until it returns. Long loops call
:func:`labcrunch_service.progress.report` (same deadline) to stop as soon as nobody waits for their answer.

A computation that runs as a job (:mod:`labcrunch_service.compute.job_context`) is admitted by the
jobs queue instead of the request queue, runs under the job's wall time from its start, and hands
the job a handle on its progress; cancelling it moves its deadline to now, which stops the loop at
its next ``progress.report``.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from labcrunch_service import backends, progress
from labcrunch_service.compute import job_context
from labcrunch_service.compute.tasks import Task, Timed
from labcrunch_service.errors import Busy, ComputeTimeout


class Runner:
    def __init__(
        self,
        max_concurrent: int,
        max_queued: int,
        *,
        retry_after: int = 1,
        wall_seconds: float = 60.0,
    ) -> None:
        self.max_concurrent = max_concurrent
        self.max_queued = max_queued
        self.retry_after = retry_after
        self.wall_seconds = wall_seconds
        self._executor: ThreadPoolExecutor | None = None  # made on first use, again after shutdown
        self._admitted = 0
        self._lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        return self._admitted

    def _admit(self, job: bool = False) -> None:
        with self._lock:
            # a job has waited for its turn in the jobs queue, which bounds how many run
            if not job and self._admitted >= self.max_concurrent + self.max_queued:
                raise Busy(
                    f"All {self.max_concurrent} compute slots and {self.max_queued} queue places "
                    "are taken; retry later.",
                    retry_after=self.retry_after,
                )
            self._admitted += 1

    def _release(self, _future: Any = None) -> None:
        with self._lock:
            self._admitted -= 1

    async def run(self, task: Task, /, *args: Any, **kwargs: Any) -> Timed[Any]:
        """Run ``task``'s function with ``(*args, **kwargs)`` in the pool; return its result,
        compute time and devices."""
        job_of_request = job_context.current()
        wall_seconds, limit_name = self.wall_seconds, "max_wall_seconds"
        if job_of_request is not None:
            await job_of_request.admitted()
            wall_seconds, limit_name = job_of_request.wall_seconds, job_of_request.limit_name
        self._admit(job_of_request is not None)
        tracker = progress.Tracker(time.monotonic() + wall_seconds, limit_name)
        ctx = contextvars.copy_context()  # carries the request id into the worker's log lines

        def job() -> Timed[Any]:
            fn = task.resolve()
            with progress.tracking(tracker):
                start = time.perf_counter()
                result = fn(*args, **kwargs)
                return Timed(result, (time.perf_counter() - start) * 1e3, backends.loaded_devices())

        try:
            future = self._pool().submit(ctx.run, job)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(self._release)
        if job_of_request is not None:
            job_of_request.attach(_ThreadHandle(tracker, future))
        wrapped = asyncio.wrap_future(future)
        # A job nobody awaits any more (cancelled, past its deadline) still ends quietly.
        wrapped.add_done_callback(_retrieve)
        try:
            return await asyncio.wait_for(asyncio.shield(wrapped), timeout=wall_seconds)
        except TimeoutError:
            future.cancel()  # a job still queued never runs (its slot is released)
            raise ComputeTimeout(
                f"The computation ran past its wall-time limit of {wall_seconds:g} s "
                f"(limits.{limit_name})."
            ) from None

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self.max_concurrent, thread_name_prefix="compute"
                )
            return self._executor

    def shutdown(self) -> None:
        """Stop taking jobs (at the end of the app's lifespan); a later job starts a new pool."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class _ThreadHandle:
    """A job's task in the thread pool: its tracker's progress; cancel moves its deadline to now
    (a thread cannot be killed: the loop stops at its next ``progress.report``)."""

    def __init__(self, tracker: progress.Tracker, future: Future[Any]) -> None:
        self._tracker = tracker
        self._future = future

    def progress(self) -> job_context.Snapshot | None:
        return self._tracker.snapshot() if self._tracker.unit else None

    def cancel(self) -> None:
        self._future.cancel()  # not started yet: never starts
        self._tracker.deadline = time.monotonic()
