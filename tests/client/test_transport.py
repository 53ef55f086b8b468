"""The client's transport: retries with backoff, Retry-After, error mapping, timeouts, the
environment, sync/async twins, per-call options."""

from __future__ import annotations

import asyncio
import email.utils
import socket
import time

import httpx
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
from tests.helpers.mock_transport import PROBLEM, info_answer, problem, recording, scripted


def test_retries_429_honouring_retry_after(sleeps):
    transport, calls = scripted(problem(429, **{"retry-after": "3"}), problem(503), info_answer())
    with Client("http://x", transport=transport, max_retries=2) as lc:
        assert lc.info().version == "9.9.9"
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
    transport, calls = scripted(problem(429, **{"retry-after": "soon"}), info_answer())
    with Client("http://x", transport=transport, max_retries=1) as lc:
        assert lc.info().service == "labcrunch"
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
    transport, calls = scripted(info_answer())
    with Client(transport=transport) as lc:
        lc.info()
    assert str(calls[0].url) == "http://lab-gpu:9000/v1/info"
    assert calls[0].headers["authorization"] == "Bearer k"


def test_async_client_has_the_same_surface(sleeps):
    transport, calls = scripted(problem(429, **{"retry-after": "1"}), info_answer())

    async def go():
        async with AsyncClient("http://x", transport=transport) as lc:
            return await lc.info()

    assert asyncio.run(go()).version == "9.9.9"
    assert sleeps == [1.0] and len(calls) == 2
    public = {n for n in dir(Client) if not n.startswith("_")}
    assert public == {n for n in dir(AsyncClient) if not n.startswith("_")} - {"aclose"} | {"close"}


def test_async_client_against_the_app_in_process(async_client):
    async def go():
        async with async_client() as lc:
            info = await lc.info()
            with pytest.raises(NotFoundError):
                await lc._send(base.Call("GET", "/v1/not-here", base.json_answer(dict)))
            return info

    assert asyncio.run(go()).service == "labcrunch"


# --- per-call options -----------------------------------------------------------------------------

def test_timeout_per_call_overrides_the_clients():
    transport, seen = recording(info_answer)
    with Client("http://x", transport=transport, timeout=30.0) as lc:
        lc.info()
        lc.info(timeout=2.5)
        lc.with_options(timeout=7.0).info()
    assert [r.extensions["timeout"]["read"] for r in seen] == [30.0, 2.5, 7.0]
    assert seen[1].extensions["timeout"]["connect"] == 2.5  # never longer than the call's limit


def test_max_retries_per_call_overrides_the_clients(sleeps):
    transport, calls = scripted(problem(503), problem(503), info_answer())
    with Client("http://x", transport=transport, max_retries=0) as lc:
        assert lc.info(max_retries=2).version == "9.9.9"
    assert len(calls) == 3 and len(sleeps) == 2
    transport, calls = scripted(problem(503))
    with Client("http://x", transport=transport, max_retries=5) as lc, pytest.raises(InternalServerError):
        lc.info(max_retries=0)
    assert len(calls) == 1


def test_async_per_call_options(sleeps):
    transport, calls = scripted(problem(429), info_answer())

    async def go():
        async with AsyncClient("http://x", transport=transport, max_retries=0) as lc:
            return await lc.info(max_retries=1, timeout=4.0)

    assert asyncio.run(go()).version == "9.9.9"
    assert len(calls) == 2 and calls[1].extensions["timeout"]["read"] == 4.0


@pytest.mark.timeout(30)
def test_a_real_socket_that_never_answers_times_out_at_the_calls_limit():
    """A listening socket that never accepts: the connection opens, no answer comes. The call's
    timeout (not the client's 120 s) ends it; pytest-timeout fails the test if it does not."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with Client(f"http://127.0.0.1:{port}", max_retries=3) as lc, pytest.raises(APITimeoutError):
            lc.info(timeout=0.3, max_retries=0)


