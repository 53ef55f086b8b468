"""Functions for compute-layer tests, named by Task path as routers name domain functions.

They run in the worker processes: ``sleep``/``spin``/... stand in for computations; ``patch``,
``unpatch``, ``call`` and ``traces`` let a test read or change a worker's state (through
``tests.helpers.workers.Workers``), since the compute no longer runs in the test's process.
"""

from __future__ import annotations

import importlib
import os
import time
from typing import Any, ClassVar

from labcrunch_service import cache, progress
from labcrunch_service.compute import Task
from labcrunch_service.progress import check_deadline, report

_ORIGINALS: dict[tuple[str, str], Any] = {}


def sleep(seconds: float) -> float:
    """Ignores the deadline, as an uninterruptible library call would."""
    time.sleep(seconds)
    return seconds


def spin() -> None:
    """A cooperative loop that runs until its deadline stops it."""
    while True:
        check_deadline()
        time.sleep(0.01)


def burn(seconds: float) -> int:
    """Busy on the CPU for ``seconds``, ignoring the deadline (pure Python: holds the GIL);
    returns the worker's pid."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return os.getpid()


def counted(steps: int, seconds: float) -> int:
    """``steps`` steps of ``seconds`` each, reporting progress after each."""
    for done in range(1, steps + 1):
        time.sleep(seconds)
        report(done, steps, "steps")
    return steps


def pid() -> int:
    return os.getpid()


def inputs(*args: Any, **kwargs: Any) -> list[tuple[bool, int]]:
    """(writeable, bytes) of each array argument as the worker received it."""
    arrays = [*args, *kwargs.values()]
    return [(bool(a.flags.writeable), int(a.nbytes)) for a in arrays]


def crash(message: str) -> None:
    raise ValueError(message)


def patch(module: str, name: str, value: Any) -> None:
    """``module.name = value`` in this worker, until :func:`unpatch`."""
    target = importlib.import_module(module)
    _ORIGINALS.setdefault((module, name), getattr(target, name))
    setattr(target, name, value)


def unpatch() -> None:
    for (module, name), value in _ORIGINALS.items():
        setattr(importlib.import_module(module), name, value)
    _ORIGINALS.clear()


def read(module: str, name: str) -> Any:
    """``module.name`` (a dotted name: ``"MODELS.misses"``) in this worker."""
    value: Any = importlib.import_module(module)
    for part in name.split("."):
        value = getattr(value, part)
    return value


def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` (pickled by value when the test defines it) in this worker."""
    return fn(*args, **kwargs)


class RecordingTracker(progress.Tracker):
    """A tracker that keeps, in this worker, every (done, total, unit) its computation reported
    (patched in as ``progress.Tracker`` by a test)."""

    SEEN: ClassVar[list[tuple[float, float | None, str]]] = []

    def check(self) -> None:
        if self.unit and (not self.SEEN or self.SEEN[-1] != (self.done, self.total, self.unit)):
            self.SEEN.append((self.done, self.total, self.unit))
        super().check()


def traces() -> dict[str, int]:
    return dict(cache.TRACES)


def burn_steps(steps: int, seconds_each: float) -> int:
    """A CPU-bound loop of ``steps`` steps of ``seconds_each`` each, reporting its progress (so a
    deadline or a cancel stops it at the next step)."""
    for step in range(steps):
        report(step, steps, "steps")
        end = time.perf_counter() + seconds_each
        while time.perf_counter() < end:
            pass
    report(steps, steps, "steps")
    return steps


SLEEP = Task("tests.helpers.tasks:sleep")
SPIN = Task("tests.helpers.tasks:spin")
BURN = Task("tests.helpers.tasks:burn")
COUNTED = Task("tests.helpers.tasks:counted")
PID = Task("tests.helpers.tasks:pid")
INPUTS = Task("tests.helpers.tasks:inputs")
CRASH = Task("tests.helpers.tasks:crash")
PATCH = Task("tests.helpers.tasks:patch")
UNPATCH = Task("tests.helpers.tasks:unpatch")
CALL = Task("tests.helpers.tasks:call")
READ = Task("tests.helpers.tasks:read")
TRACES = Task("tests.helpers.tasks:traces")
BURN_STEPS = Task("tests.helpers.tasks:burn_steps")
