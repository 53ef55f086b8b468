"""Domain entry functions named by import path, and what running one gives back.

A router names the function it wants run with a :class:`Task` (``"module:function"``) instead of
importing it: the HTTP process then never imports the maths behind it (JAX, TensorFlow, pyhf's
JAX backend), and only the process that runs the task — a compute worker — does.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

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
        module, _, name = self.path.partition(":")
        return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Timed(Generic[T]):
    """A task's result, its compute time, and the devices of the process that ran it
    (``{"jax": "cpu", "tensorflow": "gpu:0 (...)"}``; a backend that process has not loaded is
    absent)."""

    result: T
    elapsed_ms: float
    devices: dict[str, str] = field(default_factory=dict)

    def device(self, backend: str) -> str:
        """Where ``backend`` computed this result (``cpu``, ``gpu:0 (NVIDIA H200)``...)."""
        return self.devices.get(backend, "unknown")
