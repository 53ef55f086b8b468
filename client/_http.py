"""The synchronous client's HTTP transport: httpx's interface, the standard library's reading.

httpx reads an answer through h11 in 64 KB pieces, each passing several layers of Python, and then
joins them: 34-59 ms for the 24 MB of a 10⁶-point gradient on loopback (a 2-core virtual
machine), where the standard library's ``http.client`` reads the same bytes in 11-12 ms;
``python -m bench gradient`` times the whole request both ways, and ``tests/client/test_http.py``
checks that both give the same answers.
:class:`Transport` therefore sends requests to ``http://`` servers with ``http.client``, over a
pool of keep-alive connections, and hands httpx the answer whole when it has a Content-Length,
piece by piece as it arrives otherwise (a job's event stream). Requests to any other scheme
(``https://``) go to httpx's own transport. A client whose environment names a proxy does not use
this transport at all: httpx honours the proxy (and ``NO_PROXY``) only with its own transports.

Errors are httpx's (``ConnectError``, ``ReadTimeout`` ...), raised where httpx would raise them,
so the client's retries and error mapping are the same either way.
"""

from __future__ import annotations

import http.client
import select
import socket
import threading
from collections.abc import Iterator

import httpx

#: Idle connections kept per server (httpx keeps up to 20 in all).
MAX_IDLE_PER_SERVER = 8
#: Most bytes handed on at once from an answer without a Content-Length (an event stream).
STREAM_PIECE_BYTES = 64 * 1024
#: Bytes of a request body written at once.
SEND_PIECE_BYTES = 1 << 20


def _error(exc: OSError | http.client.HTTPException, timeout: type[httpx.TransportError],
           other: type[httpx.TransportError], request: httpx.Request) -> httpx.TransportError:
    """httpx's exception for a failure of the socket or of the HTTP framing."""
    if isinstance(exc, TimeoutError):
        return timeout(str(exc) or "timed out", request=request)
    if isinstance(exc, http.client.HTTPException):
        return httpx.RemoteProtocolError(str(exc) or type(exc).__name__, request=request)
    return other(str(exc), request=request)


def _readable(sock: socket.socket) -> bool:
    """Whether ``sock`` has something to read now (poll where there is one: select cannot
    watch descriptors past 1023)."""
    if not hasattr(select, "poll"):  # Windows
        return bool(select.select([sock], [], [], 0)[0])
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class Transport(httpx.BaseTransport):
    """Plain-HTTP requests through ``http.client``; others through ``fallback`` (default: httpx's
    own transport, made on the first such request: its TLS set-up takes ~50 ms)."""

    def __init__(self, fallback: httpx.BaseTransport | None = None) -> None:
        self._fallback = fallback
        self._idle: dict[tuple[str, int], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme != "http":
            with self._lock:
                if self._fallback is None:
                    self._fallback = httpx.HTTPTransport()
            return self._fallback.handle_request(request)
        timeout = request.extensions.get("timeout", {})
        server = (request.url.host, request.url.port or 80)
        connection = self._connection(server, timeout.get("connect"), request)
        try:
            response = self._exchange(connection, request, timeout)
        except BaseException:
            connection.close()
            raise
        return httpx.Response(
            response.status,
            headers=[(name.encode("latin-1"), value.encode("latin-1"))
                     for name, value in response.getheaders()],
            stream=_Answer(self, server, connection, response, request),
            extensions={"http_version": b"HTTP/1.1",
                        "reason_phrase": response.reason.encode("latin-1")})

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()
        if self._fallback is not None:
            self._fallback.close()

    def _connection(self, server: tuple[str, int], connect_timeout: float | None,
                    request: httpx.Request) -> http.client.HTTPConnection:
        """An idle keep-alive connection to ``server`` that the server has not closed, else a new
        one."""
        while True:
            with self._lock:
                idle = self._idle.get(server)
                connection = idle.pop() if idle else None
            if connection is None:
                break
            if connection.sock is not None and not _readable(connection.sock):
                return connection
            connection.close()  # readable while idle: the server closed it (or broke protocol)
        connection = http.client.HTTPConnection(*server, timeout=connect_timeout)
        try:
            connection.connect()
        except OSError as exc:
            connection.close()
            raise _error(exc, httpx.ConnectTimeout, httpx.ConnectError, request) from exc
        return connection

    @staticmethod
    def _exchange(connection: http.client.HTTPConnection, request: httpx.Request,
                  timeout: dict[str, float | None]) -> http.client.HTTPResponse:
        """Send ``request`` on ``connection``; its answer's status and headers."""
        assert connection.sock is not None
        body = memoryview(request.read())
        # In pieces: each socket write has the write timeout, as with httpx (a timeout is the
        # longest wait for progress, not for the whole body).
        pieces = [body[start:start + SEND_PIECE_BYTES] for start in range(0, len(body), SEND_PIECE_BYTES)]
        chunked = request.headers.get("transfer-encoding", "").lower() == "chunked"
        try:
            connection.sock.settimeout(timeout.get("write"))
            connection.putrequest(request.method, request.url.raw_path.decode("ascii"),
                                  skip_host=True, skip_accept_encoding=True)
            for name, value in request.headers.raw:  # Host and the rest, as httpx made them
                connection.putheader(name, value)
            connection.endheaders(pieces if pieces or chunked else None, encode_chunked=chunked)
        except (OSError, http.client.HTTPException) as exc:
            raise _error(exc, httpx.WriteTimeout, httpx.WriteError, request) from exc
        try:
            connection.sock.settimeout(timeout.get("read"))
            return connection.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            raise _error(exc, httpx.ReadTimeout, httpx.ReadError, request) from exc

    def _release(self, server: tuple[str, int], connection: http.client.HTTPConnection,
                 response: http.client.HTTPResponse) -> None:
        """Keep ``connection`` for the next request if its answer was read to the end and the
        server keeps it open; close it otherwise."""
        if response.isclosed() and not response.will_close and connection.sock is not None:
            with self._lock:
                idle = self._idle.setdefault(server, [])
                if len(idle) < MAX_IDLE_PER_SERVER:
                    idle.append(connection)
                    return
        connection.close()


class _Answer(httpx.SyncByteStream):
    """An answer's body: whole when its length is known, else piece by piece as it arrives."""

    def __init__(self, transport: Transport, server: tuple[str, int],
                 connection: http.client.HTTPConnection, response: http.client.HTTPResponse,
                 request: httpx.Request) -> None:
        self._transport, self._server = transport, server
        self._connection, self._response, self._request = connection, response, request

    def __iter__(self) -> Iterator[bytes]:
        try:
            if self._response.length is not None:
                yield self._response.read()  # one read into one buffer: no pieces to join
                return
            while piece := self._response.read1(STREAM_PIECE_BYTES):
                yield piece
        except (OSError, http.client.HTTPException) as exc:
            raise _error(exc, httpx.ReadTimeout, httpx.ReadError, self._request) from exc

    def close(self) -> None:
        self._transport._release(self._server, self._connection, self._response)
