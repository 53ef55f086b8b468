"""The session's worker processes as tests see them (the ``workers`` fixture): counters summed
over every worker, module attributes patched in every worker, functions run in each."""

from __future__ import annotations

import collections
from typing import Any

from labcrunch_service.compute.scheduler import Scheduler
from tests.helpers import tasks


class Workers:
    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def traces(self) -> collections.Counter[str]:
        """``cache.TRACES`` summed over the workers: a compile anywhere counts once."""
        total: collections.Counter[str] = collections.Counter()
        for counts in self.scheduler.broadcast(tasks.TRACES):
            total.update(counts)
        return total

    def read(self, module: str, name: str) -> list[Any]:
        """``module.name`` (dotted: ``"MODELS.misses"``) in each worker."""
        return self.scheduler.broadcast(tasks.READ, module, name)

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> list[Any]:
        """``fn(*args, **kwargs)`` in each worker; the results in worker order. A function the
        test defines travels by value, with what it closes over: read module state with
        :meth:`read`, not through a closure."""
        return self.scheduler.broadcast(tasks.CALL, fn, *args, **kwargs)

    def setattr(self, module: str, name: str, value: Any) -> None:
        """``module.name = value`` in every worker, undone when the test ends."""
        self.scheduler.broadcast(tasks.PATCH, module, name, value)

    def undo(self) -> None:
        self.scheduler.broadcast(tasks.UNPATCH)
