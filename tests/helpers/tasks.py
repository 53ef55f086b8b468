"""Functions for compute-layer tests, named by Task path as routers name domain functions.

They run in whatever process computes; the module-level lists record what ran there (the thread
runner's process is the test's own).
"""

from __future__ import annotations

import time

from labcrunch_service.compute import Task
from labcrunch_service.progress import check_deadline, report

RECORDED: list[str] = []
RAN_FOR: list[float] = []


def sleep(seconds: float) -> float:
    """Ignores the deadline, as an uninterruptible library call would."""
    time.sleep(seconds)
    return seconds


def spin() -> None:
    """A cooperative loop that runs until its deadline stops it."""
    while True:
        check_deadline()
        time.sleep(0.01)


def record(label: str) -> None:
    RECORDED.append(label)


def spin_and_time() -> None:
    """``spin``, recording in RAN_FOR how long it ran before its deadline stopped it."""
    begin = time.monotonic()
    try:
        spin()
    finally:
        RAN_FOR.append(time.monotonic() - begin)


def burn(steps: int, seconds_each: float) -> int:
    """A CPU-bound loop of ``steps`` steps of ``seconds_each`` each, reporting its progress (so a
    deadline or a cancel stops it at the next step); records in BURNED each step it began."""
    for step in range(steps):
        report(step, steps, "steps")
        BURNED.append(step)
        end = time.perf_counter() + seconds_each
        while time.perf_counter() < end:
            pass
    report(steps, steps, "steps")
    return steps


BURNED: list[int] = []
SLEEP = Task("tests.helpers.tasks:sleep")
SPIN = Task("tests.helpers.tasks:spin")
RECORD = Task("tests.helpers.tasks:record")
SPIN_AND_TIME = Task("tests.helpers.tasks:spin_and_time")
BURN = Task("tests.helpers.tasks:burn")
