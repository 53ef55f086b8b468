"""The server's HTTP protocol (service/http/server.py) under a real uvicorn: every body an app
reads through it is the bytes sent (empty, small, 16 MB, chunked in a thousand pieces, several
on one keep-alive connection), in bytes messages as ASGI promises; and the uvicorn installed
still keeps a body the way the protocol expects, so its copies are really saved."""

from __future__ import annotations

import hashlib
import http.client
import json
import urllib.parse

import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from labcrunch_service.http.server import BodyPiecesProtocol, _Pieces
from tests.helpers.servers import serve_in_thread


async def echo(request: Request) -> JSONResponse:
    kinds, pieces = set(), []
    async for piece in request.stream():
        kinds.add(type(piece).__name__)
        pieces.append(piece)
    body = b"".join(pieces)
    return JSONResponse({"sha256": hashlib.sha256(body).hexdigest(), "length": len(body),
                         "kinds": sorted(kinds), "messages": len(pieces)})


class Recording(BodyPiecesProtocol):
    """The protocol, noting what uvicorn's request cycle holds as a body after each piece."""

    seen: set[str] = set()

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        Recording.seen.add(type(self.cycle.body).__name__)


APP = Starlette(routes=[Route("/echo", echo, methods=["POST"]),
                        Route("/readyz", lambda request: PlainTextResponse("ok"))])


@pytest.fixture(scope="module")
def url():
    with serve_in_thread(APP, http=Recording) as url:
        yield url


def post(connection: http.client.HTTPConnection, body, **kwargs) -> dict:
    connection.request("POST", "/echo", body=body, **kwargs)
    response = connection.getresponse()
    assert response.status == 200
    return json.loads(response.read())


def test_bodies_arrive_whole_and_as_bytes_on_one_connection(url):
    where = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(where.hostname, where.port, timeout=60)
    rng = np.random.default_rng(7)
    for size in (0, 10, 65_537, 16 * 2**20, 3):
        body = rng.bytes(size)
        got = post(connection, body)
        assert (got["length"], got["sha256"]) == (size, hashlib.sha256(body).hexdigest())
        assert got["kinds"] == ["bytes"]
    assert got["messages"] >= 1
    connection.close()
    assert Recording.seen == {"_Pieces"}  # uvicorn still keeps a body as a bytearray: replaced


def test_a_chunked_body_of_a_thousand_pieces_arrives_whole(url):
    where = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(where.hostname, where.port, timeout=60)
    pieces = [bytes([i % 251]) * 10_000 for i in range(1000)]
    got = post(connection, iter(pieces), encode_chunked=True,
               headers={"Transfer-Encoding": "chunked"})
    assert got["length"] == 10_000_000
    assert got["sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()
    assert got["kinds"] == ["bytes"]
    connection.close()


def test_one_piece_is_handed_over_as_it_is_several_joined():
    first = b"a" * 100
    pieces = _Pieces(bytearray())
    pieces += first
    assert len(pieces) == 100 and bytes(pieces) is first  # no copy
    pieces += b"bc"
    assert len(pieces) == 102 and bytes(pieces) == first + b"bc"
    assert bytes(_Pieces(bytearray(b"xy"))) == b"xy" and bytes(_Pieces(bytearray())) == b""
