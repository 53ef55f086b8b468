"""The service itself: ``Client.info`` (``GET /v1/info``: version, backends, limits) and
``Client.ready`` (``GET /readyz``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from labcrunch._base import Call, endpoint, json_answer
from labcrunch._repr import ShortRepr


@dataclass(frozen=True, repr=False)
class BackendInfo(ShortRepr):
    """A compute backend of the server.

    Attributes:
        available: True when usable, False when missing or broken, None when not loaded yet.
        version: The installed version, or None when not installed.
        default_device: Where computations run by default (``"cpu"``, ``"gpu:0"``, ...).
        devices: Every device the backend sees.
        reason: Why it is unavailable or not loaded yet.
    """

    available: bool | None
    version: str | None
    default_device: str | None = None
    devices: tuple[str, ...] = ()
    reason: str | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> BackendInfo:
        available = body.get("available")
        return cls(available=None if available is None else bool(available),
                   version=body.get("version"), default_device=body.get("default_device"),
                   devices=tuple(body.get("devices") or ()), reason=body.get("reason"))


@dataclass(frozen=True, repr=False)
class ComputeInfo(ShortRepr):
    """The server's compute queue: jobs run at once, jobs that may wait, jobs in flight now."""

    max_concurrent_jobs: int
    max_queued_jobs: int
    in_flight: int

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ComputeInfo:
        return cls(max_concurrent_jobs=int(body["max_concurrent_jobs"]),
                   max_queued_jobs=int(body["max_queued_jobs"]), in_flight=int(body["in_flight"]))


@dataclass(frozen=True, repr=False)
class ServiceInfo(ShortRepr):
    """What ``GET /v1/info`` says about the server.

    Attributes:
        service: ``"labcrunch"``.
        version: The server's version.
        ready: Start-up warm-up is done.
        warmup_errors: Warm-up failures by domain (empty when all went well).
        backends: ``"jax"`` and ``"tensorflow"``, with versions and devices.
        libraries: Versions of the numerical libraries (None: not installed).
        compute: The compute queue's sizes.
        auth: ``"api-key"`` when requests need a key, else ``"none"``.
        limits: Every limit on the work of one request, by name (``max_points``, ...).
    """

    service: str
    version: str
    ready: bool
    warmup_errors: dict[str, str]
    backends: dict[str, BackendInfo]
    libraries: dict[str, str | None]
    compute: ComputeInfo
    auth: str
    limits: dict[str, int | float]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ServiceInfo:
        """The description from the server's JSON answer (its ``backends`` object also lists
        the ``libraries``)."""
        backends = dict(body["backends"])
        libraries = backends.pop("libraries", {})
        return cls(service=body["service"], version=body["version"], ready=bool(body["ready"]),
                   warmup_errors=dict(body.get("warmup_errors") or {}),
                   backends={k: BackendInfo.from_json(v) for k, v in backends.items()},
                   libraries=dict(libraries), compute=ComputeInfo.from_json(body["compute"]),
                   auth=body["auth"], limits=dict(body["limits"]))


def _is_ready(response: httpx.Response) -> bool:
    return response.status_code == 200


class ServiceAPI:
    """The ``info`` and ``ready`` methods of :class:`labcrunch.Client` and
    :class:`labcrunch.AsyncClient`."""

    @endpoint
    def info(self, *, timeout: float | None = None, max_retries: int | None = None,
             ) -> Call[ServiceInfo]:
        """The server's version, backends with their devices, compute queue and every limit
        (``GET /v1/info``).

        Example:
            >>> info = lc.info()
            >>> info.service, info.backends["jax"].available, info.limits["max_points"] > 0
            ('labcrunch', True, True)

        Args:
            timeout: Seconds to wait for the answer (default: the client's).
            max_retries: Retries of this call (default: the client's).

        Returns:
            ServiceInfo: the description, typed.

        Raises:
            AuthenticationError: The server needs an API key and got none or a wrong one (401).
        """
        return Call("GET", "/v1/info", json_answer(ServiceInfo.from_json), timeout=timeout,
                    max_retries=max_retries)

    @endpoint
    def ready(self, *, timeout: float | None = None, max_retries: int = 0) -> Call[bool]:
        """Whether the server has warmed up and serves requests (``GET /readyz``); a server that
        is still warming up answers False rather than raising.

        Example:
            >>> lc.ready()
            True

        Args:
            timeout: Seconds to wait for the answer (default: the client's).
            max_retries: Retries while the server cannot be reached or is not ready yet
                (default 0: ask once).

        Returns:
            bool: True once the server is ready.

        Raises:
            APIConnectionError: The server could not be reached.
        """
        return Call("GET", "/readyz", _is_ready, timeout=timeout, max_retries=max_retries,
                    check=False)
