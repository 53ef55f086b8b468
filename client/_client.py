"""Client and AsyncClient: the endpoint mixins of every domain over a sync or async transport."""

from __future__ import annotations

from labcrunch._base import AsyncTransport, SyncTransport
from labcrunch.fit import FitAPI
from labcrunch.fractal import FractalAPI
from labcrunch.gradient import GradientAPI
from labcrunch.jobs import JobsAPI
from labcrunch.minimize import MinimizeAPI
from labcrunch.nn import AsyncDenseAPI, DenseAPI, NnAPI
from labcrunch.pyhf import PyhfAPI
from labcrunch.service import ServiceAPI


class Client(ServiceAPI, GradientAPI, MinimizeAPI, FitAPI, PyhfAPI, FractalAPI, NnAPI, DenseAPI,
             JobsAPI, SyncTransport):
    """Synchronous client of a labcrunch server; a context manager that closes its connections.

    Example:
        >>> from labcrunch import Client
        >>> with Client("http://gpu-server:8000") as lc:  # doctest: +SKIP
        ...     print(lc.info().backends["jax"].default_device)
        gpu:0

    Args:
        base_url: The server (default ``$LABCRUNCH_URL``, else ``http://127.0.0.1:8000``).
        api_key: Sent as ``Authorization: Bearer …`` (default ``$LABCRUNCH_API_KEY``).
        timeout: Seconds to wait for an answer (default 120; each method's ``timeout=``
            overrides it for one call).
        max_retries: Retries of connection errors and of 408, 429, 502, 503 and 504 answers, with
            exponential backoff and jitter, honouring ``Retry-After`` (default 2; each method's
            ``max_retries=`` overrides it for one call).
        headers: Extra headers of every request.
        transport: An ``httpx`` transport (tests: ``httpx.MockTransport``, an app's transport);
            by default ``http://`` requests go through ``http.client``, which reads large
            answers several times faster than httpx does (see ``labcrunch._http``).
    """


class AsyncClient(ServiceAPI, GradientAPI, MinimizeAPI, FitAPI, PyhfAPI, FractalAPI, NnAPI,
                  AsyncDenseAPI, JobsAPI, AsyncTransport):
    """Asynchronous twin of :class:`Client`: the same methods and arguments, awaited.

    Example:
        >>> import asyncio
        >>> from labcrunch import AsyncClient
        >>> async def main():
        ...     async with AsyncClient("http://gpu-server:8000") as lc:
        ...         return await lc.gradient("x**2", at={"x": 3.0})
        >>> float(asyncio.run(main()).gradient["x"])  # doctest: +SKIP
        6.0
    """
