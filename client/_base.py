"""Transport shared by Client and AsyncClient: requests, retries with backoff, error mapping.

Endpoint methods (in the per-domain mixins) build a :class:`Call` and return
``self._send(call)``. On :class:`Client` that is the parsed result; on :class:`AsyncClient`
``_send`` is a coroutine, so the very same mixin method is awaitable there. One surface, two
clients, no duplicated endpoint code.
"""

from __future__ import annotations

import asyncio
import copy
import email.utils
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from labcrunch import _constants as C
from labcrunch.exceptions import APIConnectionError, APITimeoutError, error_for_status

_NOT_GIVEN: Any = object()


@dataclass
class Call:
    """One API request and how to read its answer."""

    method: str
    path: str
    json: Any = None
    content: bytes | None = None
    params: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    parse: Callable[[httpx.Response], Any] = lambda r: r.json()
    max_retries: int | None = None
    timeout: float | None = None
    check: bool = True  # raise the mapped exception on an error status


def _retry_after(response: httpx.Response | None) -> float | None:
    if response is None:
        return None
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:  # an HTTP date
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):  # neither: fall back to our own backoff
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _backoff(attempt: int, response: httpx.Response | None) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based)."""
    hinted = _retry_after(response)
    if hinted is not None and hinted <= 60:
        return hinted
    delay = min(C.INITIAL_RETRY_DELAY * 2**attempt, C.MAX_RETRY_DELAY)
    return delay * (1 - 0.25 * random.random())  # jitter


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
        if isinstance(body, dict):
            return body
    except ValueError:
        pass
    return {"title": response.reason_phrase, "status": response.status_code, "detail": response.text[:500]}


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    raise error_for_status(response.status_code, _problem(response), response.headers.get("x-request-id"))


class _BaseClient:
    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = C.DEFAULT_TIMEOUT,
        max_retries: int = C.DEFAULT_MAX_RETRIES,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.base_url = (base_url or C.default_base_url()).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get(C.API_KEY_ENV)
        self.timeout = timeout
        self.max_retries = max_retries
        self._headers = {"User-Agent": "labcrunch-client", **(headers or {})}
        if self.api_key:
            self._headers["Authorization"] = f"Bearer {self.api_key}"

    def with_options(self, *, max_retries: int | None = None, timeout: float | None = None):
        """A view of this client with other per-call defaults, sharing its connection pool.

        ``lc.with_options(max_retries=0).gradient(...)``.
        """
        clone = copy.copy(self)
        if max_retries is not None:
            clone.max_retries = max_retries
        if timeout is not None:
            clone.timeout = timeout
        return clone

    def _timeout(self, call: Call) -> httpx.Timeout:
        return httpx.Timeout(call.timeout or self.timeout, connect=C.DEFAULT_CONNECT_TIMEOUT)

    def _retries(self, call: Call) -> int:
        return max(0, self.max_retries if call.max_retries is None else call.max_retries)

    @staticmethod
    def _should_retry(response: httpx.Response) -> bool:
        if response.status_code not in C.RETRY_STATUSES:
            return False
        return not str(_problem(response).get("type", "")).endswith(C.PERMANENT_503_TYPES)

    def _request_kwargs(self, call: Call) -> dict[str, Any]:
        return {"json": call.json, "content": call.content, "params": call.params,
                "headers": call.headers, "timeout": self._timeout(call)}


class SyncTransport(_BaseClient):
    def __init__(self, base_url: str | None = None, *, transport: httpx.BaseTransport | None = None,
                 **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self._http = httpx.Client(base_url=self.base_url, headers=self._headers, transport=transport)

    def _send(self, call: Call) -> Any:
        retries = self._retries(call)
        for attempt in range(retries + 1):
            try:
                response = self._http.request(call.method, call.path, **self._request_kwargs(call))
            except httpx.TimeoutException as exc:
                if attempt >= retries:
                    raise APITimeoutError(f"Request timed out: {exc}") from exc
                time.sleep(_backoff(attempt, None))
                continue
            except httpx.TransportError as exc:
                if attempt >= retries:
                    raise APIConnectionError(f"Could not reach {self.base_url}: {exc}") from exc
                time.sleep(_backoff(attempt, None))
                continue
            if attempt < retries and self._should_retry(response):
                time.sleep(_backoff(attempt, response))
                continue
            if call.check:
                _raise_for(response)
            return call.parse(response)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncTransport(_BaseClient):
    def __init__(self, base_url: str | None = None, *,
                 transport: httpx.AsyncBaseTransport | None = None, **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=self._headers, transport=transport)

    async def _send(self, call: Call) -> Any:
        retries = self._retries(call)
        for attempt in range(retries + 1):
            try:
                response = await self._http.request(call.method, call.path, **self._request_kwargs(call))
            except httpx.TimeoutException as exc:
                if attempt >= retries:
                    raise APITimeoutError(f"Request timed out: {exc}") from exc
                await asyncio.sleep(_backoff(attempt, None))
                continue
            except httpx.TransportError as exc:
                if attempt >= retries:
                    raise APIConnectionError(f"Could not reach {self.base_url}: {exc}") from exc
                await asyncio.sleep(_backoff(attempt, None))
                continue
            if attempt < retries and self._should_retry(response):
                await asyncio.sleep(_backoff(attempt, response))
                continue
            if call.check:
                _raise_for(response)
            return call.parse(response)
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
