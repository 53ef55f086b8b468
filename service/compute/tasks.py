"""Domain entry functions named by import path, and what running one gives back.

A router names the function it wants run with a :class:`Task` (``"module:function"``) instead of
importing it: the HTTP process then never imports the maths behind it (JAX, TensorFlow, pyhf's
JAX backend), and only the process that runs the task — a compute worker — does.

A task's exception crosses back as a :class:`Failure`: plain data that the HTTP process turns
into the same :mod:`labcrunch_service.errors` kind (status, detail, field errors, extra fields),
so a problem answer does not depend on how the worker's framework wraps remote exceptions.
"""

from __future__ import annotations

import importlib
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from labcrunch_service import errors

T = TypeVar("T")


@dataclass(frozen=True)
class Task:
    """``path`` is ``"package.module:function"``; every Task made is listed in ``Task.made``
    (tests resolve them all)."""

    path: str
    made: ClassVar[list[Task]] = []

    def __post_init__(self) -> None:
        module, sep, name = self.path.partition(":")
        if not (module and sep and name):
            raise ValueError(f"a task path is 'module:function', not {self.path!r}")
        Task.made.append(self)

    def resolve(self) -> Callable[..., Any]:
        """The function, importing its module (in the process that runs it)."""
        return resolve(self.path)


def resolve(path: str) -> Callable[..., Any]:
    """The function a ``"module:function"`` path names, importing its module."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Timed(Generic[T]):
    """A task's result, its compute time, the devices of the process that ran it
    (``{"jax": "cpu", "tensorflow": "gpu:0 (...)"}``; a backend that process has not loaded is
    absent), and its last progress report (None when it reported none)."""

    result: T
    elapsed_ms: float
    devices: dict[str, str] = field(default_factory=dict)
    progress: dict[str, Any] | None = None

    def device(self, backend: str) -> str:
        """Where ``backend`` computed this result (``cpu``, ``gpu:0 (NVIDIA H200)``...)."""
        return self.devices.get(backend, "unknown")


class WorkerError(RuntimeError):
    """An unexpected exception in a worker (a bug, not a problem with the request): answered
    500 like any unhandled error; the message holds the worker's traceback for the log."""


@dataclass(frozen=True)
class Failure:
    """An exception raised by a task, as plain data that unpickles anywhere.

    ``kind`` is the name of the nearest :mod:`labcrunch_service.errors` class of a domain error
    (its own class may live in a module the HTTP process must not import), ``None`` for any
    other exception (then ``detail`` is its type and message and ``trace`` its traceback).
    """

    kind: str | None
    detail: str
    status: int = 500
    title: str = ""
    slug: str = ""
    errors: list[dict[str, Any]] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    trace: str = ""

    @classmethod
    def of(cls, exc: BaseException) -> Failure:
        if isinstance(exc, errors.LabcrunchError):
            known = next(k for k in type(exc).__mro__ if vars(errors).get(k.__name__) is k)
            return cls(known.__name__, exc.detail, exc.status, exc.title, exc.slug, exc.errors,
                       dict(exc.headers), dict(exc.extra))
        return cls(None, f"{type(exc).__name__}: {exc}",
                   trace="".join(traceback.format_exception(exc)))

    def exception(self) -> Exception:
        """The exception to raise in the caller's process: the same kind, status and fields."""
        if self.kind is None:
            return WorkerError(f"{self.detail}\n(in a compute worker)\n{self.trace}")
        kind: type[errors.LabcrunchError] = getattr(errors, self.kind)
        error = kind.__new__(kind)
        Exception.__init__(error, self.detail)
        error.detail, error.errors, error.headers, error.extra = (
            self.detail, self.errors, dict(self.headers), dict(self.extra))
        if (error.status, error.title, error.slug) != (self.status, self.title, self.slug):
            error.status, error.title, error.slug = self.status, self.title, self.slug  # a subclass's
        return error
