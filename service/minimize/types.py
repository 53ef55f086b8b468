"""What a sweep is made of, shared by the planning (:mod:`.sweep`) and both backends
(:mod:`.on_jax`, :mod:`.on_tensorflow`): the function, the checked plan, one run's result, and
the sweep's (numpy only: the HTTP process unpickles it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Objective:
    """The function to minimize, for any backend.

    ``make(backend, dtype)`` returns a callable taking one scalar per variable (in
    ``variables`` order) and returning a scalar; ``key`` identifies the function, for caching
    compiled code.
    """

    key: str
    variables: tuple[str, ...]
    make: Callable[[str, str], Callable[..., Any]]


@dataclass(frozen=True)
class Plan:
    """A checked request: everything a backend needs to run the sweep."""

    optimizer: str
    hyper_parameters: dict[str, Any]
    learning_rates: tuple[float | None, ...]  # (None,) for optimizers without a learning rate
    start: np.ndarray  # shape (n_variables,), in `dtype`
    lower: np.ndarray  # per-variable bounds, ±inf where open
    upper: np.ndarray
    steps: int
    history_every: int
    tolerance: float | None
    dtype: str

    def history_length(self) -> int:
        """Most history entries one run can have: 0, every, 2·every, … and the last step."""
        return self.steps // self.history_every + 1 + (1 if self.steps % self.history_every else 0)


@dataclass(frozen=True)
class Run:
    """One learning rate's run; history arrays have one row per recorded step."""

    learning_rate: float | None
    x: np.ndarray  # final position, (n_variables,)
    value: float
    grad_norm: float
    steps_taken: int
    converged: bool
    diverged: bool
    history_step: np.ndarray  # (entries,) int
    history_x: np.ndarray  # (entries, n_variables)
    history_value: np.ndarray  # (entries,)
    history_grad_norm: np.ndarray  # (entries,)


@dataclass(frozen=True)
class Landscape:
    """The function on a grid over the region the runs visited (for pictures).

    ``axes`` has one 1-D array per variable; ``value`` is (n,) for one variable and
    (n_y, n_x) for two (rows follow the second variable, as matplotlib's contour expects).
    """

    axes: tuple[np.ndarray, ...]
    value: np.ndarray


@dataclass(frozen=True)
class Sweep:
    variables: tuple[str, ...]
    optimizer: str
    hyper_parameters: dict[str, Any]  # the options with every default filled in
    runs: list[Run]
    landscape: Landscape | None = None
    constants: dict[str, float] = field(default_factory=dict)  # named constants the expression used
