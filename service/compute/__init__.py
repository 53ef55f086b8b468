"""Where computations run: routers name a domain entry function with a :class:`Task`; the
:class:`Runner` queues it by owner and runs it in a worker process (Ray), bounded in wall time
and memory (see :mod:`.scheduler`)."""

from labcrunch_service.compute.runner import OwnedRunner, Runner
from labcrunch_service.compute.scheduler import Job
from labcrunch_service.compute.tasks import Task, Timed

__all__ = ["Job", "OwnedRunner", "Runner", "Task", "Timed"]
