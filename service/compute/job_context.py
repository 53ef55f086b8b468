"""What the compute layer sees of a job: the seam between ``Runner.run`` and ``labcrunch_service.jobs``.

A request sent with ``Prefer: respond-async`` runs its route handler in the background with a
:class:`JobContext` current (a context variable, so it reaches ``Runner.run`` through the route
without any route knowing). When the handler reaches the runner, validation and the router's
limit checks have passed, and the runner:

1. ``await job.admitted()``: the job is stored (queued), the HTTP side answers 202 with its
   ``Location``, and the call returns once the job may start (its turn in the jobs queue). A
   :class:`~labcrunch_service.errors.LabcrunchError` raised here (an owner's quota) is answered
   synchronously, as a 4xx before any work.
2. runs the task under the job's own wall time, ``job.wall_seconds`` (named ``job.limit_name``
   in a timeout's message), instead of the runner's ``max_wall_seconds``;
3. ``job.attach(handle)`` as soon as the task is running, with a :class:`ComputeHandle` that
   reads the task's progress and stops it.

Without a current job (every synchronous request) nothing of this happens. This module imports
nothing of HTTP or of the jobs package.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

#: ``progress.Tracker.snapshot()``: done, total, unit, fraction, eta_seconds.
Snapshot = dict[str, float | str | None]


class ComputeHandle(Protocol):
    """A running task, as the jobs API sees it (the thread runner's, or a worker scheduler's)."""

    def progress(self) -> Snapshot | None:
        """The task's last reported progress (``progress.Tracker.snapshot()``), None before any."""

    def cancel(self) -> None:
        """Stop the task, within 2 s; its ``run`` then raises or is abandoned by the caller."""


class JobContext(Protocol):
    """The job a computation belongs to (``labcrunch_service.jobs`` implements it)."""

    wall_seconds: float
    limit_name: str

    async def admitted(self) -> None:
        """Store the job as queued (the client gets 202), then wait until it may start."""

    def attach(self, handle: ComputeHandle) -> None:
        """The task is running: ``handle`` gives its progress and stops it."""


_current: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar("job", default=None)


def current() -> JobContext | None:
    """The job the current request runs as, or None for a synchronous request."""
    return _current.get()


@contextmanager
def running_as(job: JobContext) -> Iterator[JobContext]:
    """Make ``job`` current for the ``with`` block (the jobs package, around a background request)."""
    token = _current.set(job)
    try:
        yield job
    finally:
        _current.reset(token)
