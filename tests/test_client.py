"""The client: retries with backoff, Retry-After, error mapping, sync/async twins."""

from __future__ import annotations

import asyncio
import email.utils
import time

import httpx
import numpy as np
import pytest

import labcrunch._base as base
from labcrunch import (
    APIConnectionError,
    APITimeoutError,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    Client,
    InternalServerError,
    NotFoundError,
    RateLimitError,
    RequestTooLargeError,
    ValidationError,
)
from labcrunch._arrays import array, json_numbers, number

PROBLEM = {"type": "t", "title": "T", "status": 0, "detail": "what went wrong"}


@pytest.fixture
def sleeps(monkeypatch):
    """Record backoff sleeps instead of sleeping."""
    waited: list[float] = []
    monkeypatch.setattr(base.time, "sleep", waited.append)

    async def fake_async_sleep(seconds: float) -> None:
        waited.append(seconds)

    monkeypatch.setattr(base.asyncio, "sleep", fake_async_sleep)
    return waited


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


def test_retries_429_honouring_retry_after(sleeps):
    transport, calls = scripted(problem(429, **{"retry-after": "3"}), problem(503),
                                httpx.Response(200, json={"ok": True}))
    with Client("http://x", transport=transport, max_retries=2) as lc:
        assert lc.info() == {"ok": True}
    assert len(calls) == 3
    assert sleeps[0] == 3.0                       # Retry-After wins
    assert 0.5 * 0.75 <= sleeps[1] <= 0.5 * 2     # then exponential backoff with jitter


@pytest.mark.parametrize(("header", "expected"), [
    ("2.5", 2.5), ("-4", 0.0), ("soon", None), ("", None), ("NaN", None),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date in the past: now
])
def test_retry_after_header_forms(header, expected):
    """Seconds or an HTTP date (RFC 9110); anything else is ignored, never an exception."""
    assert base._retry_after(httpx.Response(429, headers={"retry-after": header})) == expected


def test_retry_after_http_date_in_the_future():
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= base._retry_after(httpx.Response(503, headers={"retry-after": when})) <= 30


def test_garbled_retry_after_still_retries(sleeps):
    transport, calls = scripted(problem(429, **{"retry-after": "soon"}), httpx.Response(200, json={}))
    with Client("http://x", transport=transport, max_retries=1) as lc:
        assert lc.info() == {}
    assert len(calls) == 2 and 0.5 * 0.75 <= sleeps[0] <= 0.5


def test_backoff_doubles_and_is_capped():
    delays = [base._backoff(k, None) for k in range(8)]
    assert all(0.75 * min(0.5 * 2**k, 8.0) <= d <= min(0.5 * 2**k, 8.0) for k, d in enumerate(delays))


def test_gives_up_after_max_retries(sleeps):
    transport, calls = scripted(*[problem(503)] * 3)
    with Client("http://x", transport=transport, max_retries=2) as lc, pytest.raises(InternalServerError) as err:
        lc.info()
    assert len(calls) == 3 and err.value.status == 503 and err.value.request_id == "rid-1"


@pytest.mark.parametrize("slug", ["backend-unavailable", "timeout"])
def test_permanent_503s_are_not_retried(slug, sleeps):
    """A missing backend (e.g. no TensorFlow on that server) stays missing, and a job over its wall
    time would only run again for as long; other 503s (a server warming up) are retried."""
    permanent = httpx.Response(503, json={**PROBLEM, "status": 503,
                                          "type": f"https://labcrunch.dev/problems/{slug}"})
    transport, calls = scripted(permanent)
    with Client("http://x", transport=transport, max_retries=2) as lc, pytest.raises(InternalServerError):
        lc.info()
    assert len(calls) == 1 and sleeps == []


def test_negative_max_retries_means_one_try(sleeps):
    transport, calls = scripted(problem(503))
    with Client("http://x", transport=transport, max_retries=-1) as lc, pytest.raises(InternalServerError):
        lc.info()
    assert len(calls) == 1


def test_per_call_max_retries(sleeps):
    transport, calls = scripted(problem(429))
    with Client("http://x", transport=transport, max_retries=5) as lc, pytest.raises(RateLimitError):
        lc.with_options(max_retries=0).info()
    assert len(calls) == 1 and sleeps == []


@pytest.mark.parametrize(
    ("status", "cls"),
    [(400, BadRequestError), (401, AuthenticationError), (404, NotFoundError),
     (413, RequestTooLargeError), (422, ValidationError), (500, InternalServerError)],
)
def test_each_status_maps_to_its_exception(status, cls, sleeps):
    transport, calls = scripted(problem(status))
    with Client("http://x", transport=transport) as lc, pytest.raises(cls) as err:
        lc.info()
    assert len(calls) == 1  # not retried
    assert err.value.status == status
    assert err.value.problem["detail"] == "what went wrong"
    assert err.value.request_id == "rid-1"


def test_connection_errors_are_retried_then_raised(sleeps):
    transport, calls = scripted(*[httpx.ConnectError("refused")] * 3)
    with Client("http://x", transport=transport, max_retries=2) as lc, pytest.raises(APIConnectionError):
        lc.info()
    assert len(calls) == 3 and len(sleeps) == 2


def test_timeouts_raise_api_timeout(sleeps):
    transport, _ = scripted(httpx.ReadTimeout("slow"), httpx.ReadTimeout("slow"))
    with Client("http://x", transport=transport, max_retries=1) as lc, pytest.raises(APITimeoutError):
        lc.info()


def test_api_key_and_base_url_from_environment(monkeypatch):
    monkeypatch.setenv("LABCRUNCH_URL", "http://lab-gpu:9000/")
    monkeypatch.setenv("LABCRUNCH_API_KEY", "k")
    transport, calls = scripted(httpx.Response(200, json={}))
    with Client(transport=transport) as lc:
        lc.info()
    assert str(calls[0].url) == "http://lab-gpu:9000/v1/info"
    assert calls[0].headers["authorization"] == "Bearer k"


def test_async_client_has_the_same_surface(sleeps):
    transport, calls = scripted(problem(429, **{"retry-after": "1"}), httpx.Response(200, json={"v": 1}))

    async def go():
        async with AsyncClient("http://x", transport=transport) as lc:
            return await lc.info()

    assert asyncio.run(go()) == {"v": 1}
    assert sleeps == [1.0] and len(calls) == 2
    public = {n for n in dir(Client) if not n.startswith("_")}
    assert public == {n for n in dir(AsyncClient) if not n.startswith("_")} - {"aclose"} | {"close"}


def test_async_client_against_the_app_in_process(app):
    async def go():
        async with AsyncClient("http://app", transport=httpx.ASGITransport(app=app)) as lc:
            info = await lc.info()
            with pytest.raises(NotFoundError):
                await lc._send(base.Call("GET", "/v1/not-here"))
            return info

    assert asyncio.run(go())["service"] == "labcrunch"


def test_non_finite_spellings_round_trip():
    assert number("NaN") != number("NaN")
    assert number("-Infinity") == float("-inf")
    out = array([[1, "Infinity"], ["NaN", -2.5]])
    assert out.shape == (2, 2) and out[0, 1] == float("inf") and out[1, 1] == -2.5
    spelled = json_numbers(np.array([[1.5, np.inf], [np.nan, -np.inf]]))
    assert spelled == [[1.5, "Infinity"], ["NaN", "-Infinity"]]
    assert json_numbers(np.arange(3.0)) == [0.0, 1.0, 2.0]
