"""What the gradient entry function returns: plain numpy data (the HTTP process unpickles it, so
it lives here, away from the frameworks)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Derivatives:
    """``value`` has shape ``()`` for one point or ``(N,)`` for a batch; ``gradient`` adds a last
    axis over ``variables``, ``hessian`` two (``None`` for order 1)."""

    variables: tuple[str, ...]
    value: np.ndarray
    gradient: np.ndarray
    hessian: np.ndarray | None
    batch: bool
