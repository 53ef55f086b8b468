"""Client methods and result types for the histfactory endpoints."""

from __future__ import annotations


class PyhfAPI:
    """Mixin: every method builds a Call and returns ``self._send(call)``."""
