"""Client methods and result types for the fractal endpoints."""

from __future__ import annotations


class FractalAPI:
    """Mixin: every method builds a Call and returns ``self._send(call)``."""
