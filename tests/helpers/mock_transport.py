"""Scripted answers for the client's own logic (retries, errors, what it sends): httpx
MockTransports that answer without a server."""

from __future__ import annotations

import httpx

PROBLEM = {"type": "t", "title": "T", "status": 0, "detail": "what went wrong"}


# A /v1/info answer as the server writes it (the in-process tests below read the real one).
INFO = {
    "service": "labcrunch", "version": "9.9.9", "ready": True, "warmup_errors": {},
    "backends": {"jax": {"available": True, "version": "0.1", "x64": True, "default_device": "cpu",
                         "devices": ["cpu:0 cpu"]},
                 "tensorflow": {"available": None, "version": "2.0", "reason": "not loaded yet"},
                 "libraries": {"pyhf": "0.7.6", "scipy": None}},
    "compute": {"max_concurrent_jobs": 2, "max_queued_jobs": 16, "in_flight": 0},
    "auth": "none", "limits": {"max_points": 2_000_000, "max_wall_seconds": 60.0},
}


def scripted(*responses):
    """A MockTransport answering with the given responses (or raising given exceptions) in order."""
    calls: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return httpx.MockTransport(handler), calls


def problem(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={**PROBLEM, "status": status},
                          headers={"x-request-id": "rid-1", **headers})


def info_answer() -> httpx.Response:
    return httpx.Response(200, json=INFO)


def recording(response_factory):
    """A MockTransport answering every request with ``response_factory()``; returns the requests."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return response_factory()

    return httpx.MockTransport(handler), seen
