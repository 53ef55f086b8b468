"""What the gradient entry function returns: plain numpy data (the HTTP process unpickles it, so
it lives here, away from the frameworks)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Derivatives:
    """``value`` has shape ``()`` for one point or ``(N,)`` for a batch; ``gradient`` adds a last
    axis over ``variables``, ``hessian`` two (``None`` for order 1); ``constants`` are the named
    constants the formula used, with their values."""

    variables: tuple[str, ...]
    value: np.ndarray
    gradient: np.ndarray
    hessian: np.ndarray | None
    batch: bool
    constants: dict[str, float] = field(default_factory=dict)
