"""Client methods and result types for the fit endpoints."""

from __future__ import annotations


class FitAPI:
    """Mixin: every method builds a Call and returns ``self._send(call)``."""
