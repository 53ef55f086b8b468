"""How far the running computation has got, reported by the domain's long loops.

Domain code calls :func:`report` between chunks of work (``report(done, total, "steps")``) and
:func:`check_deadline` where no count makes sense. Both raise
:class:`~labcrunch_service.errors.ComputeTimeout` once the computation is past its deadline, so a
loop stops as soon as nobody waits for its answer; :func:`report` also records the count, which
the compute layer reads (``/v1/jobs`` shows it as progress). Outside a tracked computation (a
test calling domain code directly) both do nothing.

This module imports nothing of HTTP or of the frameworks: domain code and workers use it alike.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from labcrunch_service.errors import ComputeTimeout


@dataclass
class Tracker:
    """The progress of one computation; ``deadline`` is on the ``time.monotonic()`` clock."""

    deadline: float | None = None
    limit_name: str = "max_wall_seconds"
    done: float = 0.0
    total: float | None = None
    unit: str = ""
    started: float = field(default_factory=time.monotonic)

    def check(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise ComputeTimeout(
                f"The computation ran past its wall-time limit (limits.{self.limit_name}).")

    def snapshot(self) -> dict[str, float | str | None]:
        """``done``, ``total``, ``unit``, ``fraction`` and ``eta_seconds`` (None when unknown)."""
        fraction = self.done / self.total if self.total else None
        elapsed = time.monotonic() - self.started
        eta = elapsed * (1 - fraction) / fraction if fraction else None
        return {"done": self.done, "total": self.total, "unit": self.unit,
                "fraction": fraction, "eta_seconds": eta}


_current: contextvars.ContextVar[Tracker | None] = contextvars.ContextVar("progress", default=None)


@contextmanager
def tracking(tracker: Tracker) -> Iterator[Tracker]:
    """Make ``tracker`` the current computation's for the ``with`` block (this thread/context)."""
    token = _current.set(tracker)
    try:
        yield tracker
    finally:
        _current.reset(token)


def current() -> Tracker | None:
    return _current.get()


def report(done: float, total: float | None, unit: str) -> None:
    """Record that ``done`` of ``total`` ``unit`` are finished; stop if past the deadline."""
    tracker = _current.get()
    if tracker is None:
        return
    tracker.done, tracker.total, tracker.unit = float(done), None if total is None else float(total), unit
    tracker.check()


def check_deadline() -> None:
    """Stop (ComputeTimeout) if the current computation is past its deadline."""
    tracker = _current.get()
    if tracker is not None:
        tracker.check()
