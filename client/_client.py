"""Client and AsyncClient: one surface over sync and async transports."""

from __future__ import annotations

from typing import Any

from labcrunch._base import AsyncTransport, Call, SyncTransport
from labcrunch.fit import FitAPI
from labcrunch.fractal import FractalAPI
from labcrunch.gradient import GradientAPI
from labcrunch.minimize import MinimizeAPI
from labcrunch.pyhf import PyhfAPI


class ServiceAPI:
    """Health and description of the service."""

    def info(self) -> Any:
        """``GET /v1/info``: version, backends with devices, limits (a dict)."""
        return self._send(Call("GET", "/v1/info"))

    def ready(self) -> Any:
        """``GET /readyz``: True once the server has warmed up (never raises on 503)."""
        return self._send(Call("GET", "/readyz", parse=lambda r: r.status_code == 200,
                               max_retries=0, check=False))


class Client(ServiceAPI, GradientAPI, MinimizeAPI, FitAPI, PyhfAPI, FractalAPI, SyncTransport):
    """Synchronous client. ``with Client() as lc: lc.info()``.

    ``base_url`` defaults to ``$LABCRUNCH_URL`` or ``http://127.0.0.1:8000``; ``api_key`` to
    ``$LABCRUNCH_API_KEY``. Connection errors, 408, 429, 502, 503 and 504 are retried
    ``max_retries`` times with exponential backoff and jitter, honouring ``Retry-After``.
    """


class AsyncClient(ServiceAPI, GradientAPI, MinimizeAPI, FitAPI, PyhfAPI, FractalAPI, AsyncTransport):
    """Asynchronous twin of :class:`Client`: the same methods, awaited.

    ``async with AsyncClient() as lc: await lc.info()``.
    """
