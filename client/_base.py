"""Transport shared by Client and AsyncClient: requests, retries with backoff, error mapping.

An endpoint is written once, in its domain's mixin, as a method decorated with :class:`endpoint`
that builds and returns a :class:`Call` (the request and how to read its answer). Reached through
a :class:`Client` the method sends that call and returns the parsed result; reached through an
:class:`AsyncClient` it is a coroutine function returning the same result. Type checkers see the
same: ``Client().gradient(...)`` is a ``GradientResult``, ``AsyncClient().gradient(...)`` a
coroutine of one.
"""

from __future__ import annotations

import asyncio
import copy
import email.utils
import functools
import inspect
import math
import os
import random
import re
import time
import types
import urllib.request
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypeVar, overload

import httpx

from labcrunch import _constants as C
from labcrunch._http import Transport
from labcrunch.exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    error_for_status,
)

T = TypeVar("T")
P = ParamSpec("P")


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API request and how to read its answer (``parse``), with per-call options.

    ``timeout`` and ``max_retries`` left None take the client's; ``check=False`` hands error
    answers to ``parse`` instead of raising; ``progress=True`` runs the request as a server-side
    job and waits for it with a progress bar (:mod:`labcrunch.jobs`).
    """

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    json: Any = None
    content: bytes | None = None
    params: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None
    max_retries: int | None = None
    check: bool = True
    progress: bool = False


def json_answer(from_json: Callable[[Any], T]) -> Callable[[httpx.Response], T]:
    """A ``Call.parse`` that reads a JSON answer with a result type's ``from_json``."""

    def parse(response: httpx.Response) -> T:
        return from_json(response.json())

    return parse


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
    if hinted is not None and hinted <= C.MAX_RETRY_AFTER:
        return hinted
    delay = min(C.INITIAL_RETRY_DELAY * 2.0**attempt, C.MAX_RETRY_DELAY)
    return delay * (1 - 0.25 * random.random())  # jitter


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
        if isinstance(body, dict):
            return body
    except ValueError:
        pass
    return {"title": response.reason_phrase, "status": response.status_code, "detail": response.text[:500]}


def _status_error(response: httpx.Response) -> APIStatusError:
    return error_for_status(response.status_code, _problem(response), response.headers.get("x-request-id"))


class _BaseClient:
    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = C.DEFAULT_TIMEOUT,
        max_retries: int = C.DEFAULT_MAX_RETRIES,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.base_url = (base_url or C.default_base_url()).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get(C.API_KEY_ENV)
        self.timeout = timeout
        self.max_retries = max_retries
        self._headers = {"User-Agent": "labcrunch-client", **(headers or {})}
        if self.api_key:
            self._headers["Authorization"] = f"Bearer {self.api_key}"

    def with_options(self, *, max_retries: int | None = None, timeout: float | None = None) -> Self:
        """A view of this client with other defaults for every call, sharing its connection pool.

        Example:
            >>> lc.with_options(max_retries=0, timeout=5.0).ready()
            True
        """
        clone = copy.copy(self)
        if max_retries is not None:
            clone.max_retries = max_retries
        if timeout is not None:
            clone.timeout = timeout
        return clone

    def _request_options(self, call: Call[Any]) -> dict[str, Any]:
        timeout = self.timeout if call.timeout is None else call.timeout
        return {"json": call.json, "content": call.content, "params": call.params,
                "headers": dict(call.headers),
                "timeout": httpx.Timeout(timeout, connect=min(timeout, C.DEFAULT_CONNECT_TIMEOUT))}

    def _retries(self, call: Call[Any]) -> int:
        return max(0, self.max_retries if call.max_retries is None else call.max_retries)

    @staticmethod
    def _retryable(response: httpx.Response) -> bool:
        if response.status_code not in C.RETRY_STATUSES:
            return False
        return not str(_problem(response).get("type", "")).endswith(C.PERMANENT_503_TYPES)

    def _transport_error(self, exc: httpx.TransportError) -> APIConnectionError:
        if isinstance(exc, httpx.TimeoutException):
            return APITimeoutError(f"Request timed out: {exc}")
        return APIConnectionError(f"Could not reach {self.base_url}: {exc}")

    @staticmethod
    def _result(call: Call[T], response: httpx.Response) -> T:
        if call.check and not response.is_success:
            raise _status_error(response)
        return call.parse(response)


def _environment_proxy() -> bool:
    """Whether the environment names a proxy (``HTTP_PROXY`` and the like; ``NO_PROXY`` alone
    is none): httpx honours it only with its own transports."""
    return any(scheme != "no" for scheme in urllib.request.getproxies())


class SyncTransport(_BaseClient):
    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = C.DEFAULT_TIMEOUT,
        max_retries: int = C.DEFAULT_MAX_RETRIES,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key=api_key, timeout=timeout, max_retries=max_retries,
                         headers=headers)
        if transport is None and not _environment_proxy():
            transport = Transport()  # large answers read several times faster (labcrunch._http)
        self._http = httpx.Client(base_url=self.base_url, headers=self._headers, transport=transport)

    def _send(self, call: Call[T]) -> T:
        if call.progress:
            from labcrunch.jobs import run_with_progress  # jobs imports this module

            return run_with_progress(self, call)
        retries = self._retries(call)
        attempt = 0
        while True:
            try:
                response = self._http.request(call.method, call.path, **self._request_options(call))
            except httpx.TransportError as exc:
                if attempt >= retries:
                    raise self._transport_error(exc) from exc
                time.sleep(_backoff(attempt, None))
            else:
                if attempt >= retries or not self._retryable(response):
                    return self._result(call, response)
                time.sleep(_backoff(attempt, response))
            attempt += 1

    def close(self) -> None:
        """Close the connection pool (``with Client() as lc:`` does it on exit)."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncTransport(_BaseClient):
    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = C.DEFAULT_TIMEOUT,
        max_retries: int = C.DEFAULT_MAX_RETRIES,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key=api_key, timeout=timeout, max_retries=max_retries,
                         headers=headers)
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=self._headers, transport=transport)

    async def _send(self, call: Call[T]) -> T:
        if call.progress:
            from labcrunch.jobs import run_with_progress_async  # jobs imports this module

            return await run_with_progress_async(self, call)
        retries = self._retries(call)
        attempt = 0
        while True:
            try:
                response = await self._http.request(call.method, call.path, **self._request_options(call))
            except httpx.TransportError as exc:
                if attempt >= retries:
                    raise self._transport_error(exc) from exc
                await asyncio.sleep(_backoff(attempt, None))
            else:
                if attempt >= retries or not self._retryable(response):
                    return self._result(call, response)
                await asyncio.sleep(_backoff(attempt, response))
            attempt += 1

    async def aclose(self) -> None:
        """Close the connection pool (``async with AsyncClient() as lc:`` does it on exit)."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class endpoint(Generic[P, T]):  # noqa: N801 - used as a decorator, like property
    """Decorator of an endpoint method: the method builds a :class:`Call`; the client sends it.

    On a :class:`SyncTransport` (``Client``) the decorated method returns the parsed result; on
    an :class:`AsyncTransport` (``AsyncClient``) it is a coroutine function returning it. Both
    keep the method's name, signature (with the result type as its return annotation) and
    docstring, so ``help(Client.gradient)`` reads as the method itself.
    """

    def __init__(self, build: Callable[Concatenate[Any, P], Call[T]]) -> None:
        self.build = build
        signature = inspect.signature(build)
        signature = signature.replace(return_annotation=_result_annotation(signature.return_annotation))

        def send(client: SyncTransport, *args: P.args, **kwargs: P.kwargs) -> T:
            return client._send(build(client, *args, **kwargs))

        async def send_async(client: AsyncTransport, *args: P.args, **kwargs: P.kwargs) -> T:
            return await client._send(build(client, *args, **kwargs))

        self._sync: Callable[..., T] = functools.wraps(build)(send)
        self._async: Callable[..., Coroutine[Any, Any, T]] = functools.wraps(build)(send_async)
        self._sync.__signature__ = signature  # type: ignore[attr-defined]
        self._async.__signature__ = signature  # type: ignore[attr-defined]

    @overload
    def __get__(self, client: SyncTransport, owner: type[Any] | None = None) -> Callable[P, T]: ...

    @overload
    def __get__(self, client: AsyncTransport, owner: type[Any] | None = None,
                ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    @overload
    def __get__(self, client: None, owner: type[AsyncTransport],
                ) -> Callable[Concatenate[AsyncTransport, P], Coroutine[Any, Any, T]]: ...

    @overload
    def __get__(self, client: None, owner: type[Any] | None = None,
                ) -> Callable[Concatenate[SyncTransport, P], T]: ...

    def __get__(self, client: Any, owner: type[Any] | None = None) -> Any:
        if client is None:  # looked up on a class: the plain function, for help() and dir()
            is_async = owner is not None and issubclass(owner, AsyncTransport)
            return self._async if is_async else self._sync
        if isinstance(client, AsyncTransport):
            return types.MethodType(self._async, client)
        return types.MethodType(self._sync, client)


def _result_annotation(annotation: Any) -> Any:
    """``Call[X]`` → ``X`` (annotations are strings under ``from __future__ import annotations``)."""
    if isinstance(annotation, str):
        found = re.fullmatch(r"Call\[(.+)\]", annotation)
        return found.group(1) if found else annotation
    args = getattr(annotation, "__args__", None)
    return args[0] if args else annotation
