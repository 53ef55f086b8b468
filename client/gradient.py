"""Client methods and result types for the gradient endpoints."""

from __future__ import annotations


class GradientAPI:
    """Mixin: every method builds a Call and returns ``self._send(call)``."""
