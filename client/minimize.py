"""Client methods and result types for the minimize endpoints."""

from __future__ import annotations


class MinimizeAPI:
    """Mixin: every method builds a Call and returns ``self._send(call)``."""
