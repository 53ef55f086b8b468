"""Where computations run: routers name a domain entry function with a :class:`Task` and the
:class:`Runner` runs it off the event loop, bounded in number and in wall time."""

from labcrunch_service.compute.runner import Runner
from labcrunch_service.compute.tasks import Task, Timed

__all__ = ["Runner", "Task", "Timed"]
