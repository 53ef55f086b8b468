"""The synchronous client's transport (labcrunch._http): the same answers as httpx's own
transport, keep-alive, event streams as they arrive, httpx's errors, https and proxies left to
httpx. Against a real uvicorn server in a thread."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading

import httpx
import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from labcrunch import APIConnectionError, APITimeoutError, Client
from labcrunch._base import Call
from labcrunch._http import Transport
from tests.helpers.servers import free_port, serve_in_thread

BIG = np.random.default_rng(7).bytes(24 * 2**20 + 3)  # a 10⁶-point gradient's answer, and odd
released = threading.Event()  # lets the event stream's second event go


async def echo(request: Request) -> Response:
    """What arrived: method, path, query, headers (repeated ones too), the body's length and
    digest; the body itself back as the answer's second part."""
    body = await request.body()
    seen = {"method": request.method, "path": request.url.path, "query": request.url.query,
            "headers": [[k.decode(), v.decode()] for k, v in request.headers.raw],
            "length": len(body), "peer_port": request.client.port if request.client else None}
    return Response(json.dumps(seen).encode() + b"\n" + body, media_type="application/octet-stream",
                    headers={"x-twice": "a"}, status_code=int(request.query_params.get("status", 200)))


async def big(request: Request) -> Response:
    return Response(BIG, media_type="application/x-npz")


async def zipped(request: Request) -> Response:
    return Response(gzip.compress(b"squeezed " * 1000), headers={"content-encoding": "gzip"})


async def events(request: Request) -> StreamingResponse:
    async def stream():
        yield b"data: 1\n\n"
        freed = await asyncio.to_thread(released.wait, 30)
        yield f"data: released={freed}\n\n".encode()

    return StreamingResponse(stream(), media_type="text/event-stream")


async def slow(request: Request) -> Response:
    await asyncio.sleep(5)
    return Response(b"late")


async def ready(request: Request) -> Response:
    return Response(b"ok")


APP = Starlette(routes=[Route("/echo", echo, methods=["GET", "POST", "PUT", "DELETE", "HEAD"]),
                        Route("/big", big), Route("/zipped", zipped), Route("/events", events),
                        Route("/slow", slow), Route("/ready", ready)])


@pytest.fixture(scope="module")
def url():
    # keep-alive of 1 s: the test of a connection the server closed waits that long
    with serve_in_thread(APP, ready_path="/ready", timeout_keep_alive=1) as served:
        yield served


@pytest.fixture
def ours(url):
    with httpx.Client(base_url=url, transport=Transport(), timeout=30) as client:
        yield client


def _seen(response: httpx.Response) -> tuple[dict, bytes]:
    head, _, body = response.content.partition(b"\n")
    return json.loads(head), body


@pytest.fixture
def no_proxy(monkeypatch):
    """An environment that names no proxy (NO_PROXY alone names none)."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "localhost")


def test_the_default_client_uses_it_for_plain_http(no_proxy):
    with Client("http://127.0.0.1:1") as lc:
        assert isinstance(lc._http._transport, Transport)


def test_a_proxy_in_the_environment_leaves_everything_to_httpx(monkeypatch):
    """httpx honours HTTP_PROXY (and NO_PROXY) only with its own transports."""
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    with Client("http://127.0.0.1:1") as lc:
        assert not isinstance(lc._http._transport, Transport)
        assert lc._http._transport_for_url(httpx.URL("http://gpu-server:8000/")) is not lc._http._transport


@pytest.mark.parametrize(("method", "path", "params", "content"), [
    ("GET", "/echo", {"q": "a b/ü&=", "n": "1"}, None),
    ("POST", "/echo", None, b'{"expression": "x**2"}'),
    ("POST", "/echo", {"status": "422"}, b"\x00\xff" * 100_000),
    ("PUT", "/echo", None, b""),
    ("DELETE", "/echo", {"status": "404"}, None),
    ("HEAD", "/echo", None, None),
    ("GET", "/zipped", None, None),
])
def test_the_same_answers_as_httpx_own_transport(url, ours, method, path, params, content):
    with httpx.Client(base_url=url, timeout=30) as theirs:
        expected = theirs.request(method, path, params=params, content=content,
                                  headers={"x-many": "1, 2"})
    got = ours.request(method, path, params=params, content=content, headers={"x-many": "1, 2"})
    assert got.status_code == expected.status_code
    assert got.reason_phrase == expected.reason_phrase and got.http_version == "HTTP/1.1"
    for name in ("content-type", "content-length", "content-encoding", "x-twice"):
        assert got.headers.get(name) == expected.headers.get(name)
    if path == "/echo" and method != "HEAD":
        (seen, body), (seen_theirs, body_theirs) = _seen(got), _seen(expected)
        assert body == body_theirs == (content or b"")
        for key in ("method", "path", "query", "length"):
            assert seen[key] == seen_theirs[key]
        assert seen["headers"] == seen_theirs["headers"]  # Host first, as httpx made them
    else:
        assert got.content == expected.content  # /zipped: decoded by httpx in both


def test_a_large_answer_arrives_whole(ours):
    for _ in range(2):  # the second on the kept connection
        response = ours.get("/big")
        assert response.status_code == 200 and response.content == BIG


def test_a_large_body_goes_out_whole(ours):
    seen, body = _seen(ours.post("/echo", content=BIG))
    assert seen["length"] == len(BIG) and body == BIG


def test_a_streamed_body_with_its_length_and_one_without(ours):
    pieces = [b"abc", b"", b"defg"]
    seen, body = _seen(ours.post("/echo", content=iter(pieces)))  # chunked: no length given
    assert body == b"abcdefg" and ["transfer-encoding", "chunked"] in seen["headers"]
    seen, body = _seen(ours.post("/echo", content=pieces, headers={"content-length": "7"}))
    assert body == b"abcdefg" and ["content-length", "7"] in seen["headers"]


def test_keep_alive_one_connection_for_consecutive_requests(ours):
    ports = {_seen(ours.get("/echo"))[0]["peer_port"] for _ in range(3)}
    assert len(ports) == 1


def test_an_answer_not_read_to_the_end_is_not_reused(ours):
    first = _seen(ours.get("/echo"))[0]["peer_port"]
    with ours.stream("GET", "/events") as response:  # on the same connection, left unfinished
        released.clear()
        assert next(response.iter_lines()) == "data: 1"
    released.set()  # the server's stream may end now
    after = _seen(ours.get("/echo"))[0]["peer_port"]
    assert after != first


def test_a_connection_the_server_closed_is_not_reused(ours):
    first = _seen(ours.get("/echo"))[0]["peer_port"]
    # The server's keep-alive is 1 s: it closes the idle connection; the next request notices
    # it is readable (closed) and opens another instead of failing on it.
    threading.Event().wait(2.5)
    second = _seen(ours.get("/echo"))
    assert second[0]["peer_port"] != first


def test_an_event_stream_arrives_as_it_is_sent(ours):
    """The second event waits for the test to have read the first: a transport that read the
    answer whole would wait for the server's 30 s and then see released=False."""
    released.clear()
    with ours.stream("GET", "/events") as response:
        lines = response.iter_lines()
        assert next(lines) == "data: 1"
        released.set()
        assert [line for line in lines if line] == ["data: released=True"]


def test_timeouts_and_refusals_are_httpx_errors(url, ours):
    with pytest.raises(httpx.ReadTimeout):
        ours.get("/slow", timeout=0.3)
    assert ours.get("/echo").status_code == 200  # the timed-out connection was dropped, not reused
    with pytest.raises(httpx.ConnectError), httpx.Client(transport=Transport()) as client:
        client.get(f"http://127.0.0.1:{free_port()}/")


def test_the_client_maps_them_as_before(url, no_proxy):
    with Client(url, max_retries=0) as lc:
        assert isinstance(lc._http._transport, Transport)
        with pytest.raises(APITimeoutError):
            lc._send(Call("GET", "/slow", lambda response: response, timeout=0.3))
    with Client(f"http://127.0.0.1:{free_port()}", max_retries=0) as lc, pytest.raises(APIConnectionError):
        lc.ready()


def test_other_schemes_go_to_the_fallback():
    seen = []
    fallback = httpx.MockTransport(lambda request: seen.append(request.url) or httpx.Response(204))
    with httpx.Client(transport=Transport(fallback)) as client:
        assert client.get("https://gpu-server:8443/v1/info").status_code == 204
    assert seen == [httpx.URL("https://gpu-server:8443/v1/info")]


def test_https_without_a_fallback_goes_to_httpx_own_transport():
    """Made on the first https request (its TLS set-up is not paid by plain-HTTP clients)."""
    with httpx.Client(transport=Transport()) as client, pytest.raises(httpx.ConnectError):
        client.get(f"https://127.0.0.1:{free_port()}/", timeout=5)
