"""The HTTP server's protocol: uvicorn's httptools protocol, with a request body's pieces kept as
they arrive.

uvicorn (0.54) appends each piece of a body to a bytearray and hands the app ``bytes()`` of it:
two copies of every byte before the app's own. For a 10⁶-point gradient's 16 MB body that is
~3 ms of the ~15 the server takes to read it here. :class:`BodyPiecesProtocol` keeps the pieces in
a list instead and hands them over as they are (joined only when several arrived between two
reads of the app). A uvicorn whose body is not a bytearray (older ones keep ``bytes`` and pass
them on as they are) is left alone; ``tests/service/http/test_server.py`` checks the bodies an
app receives through it.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _Pieces:
    """What uvicorn's request cycle holds as ``body``: ``+=`` appends a piece, ``len()`` and
    ``bytes()`` as of a bytearray of them all."""

    __slots__ = ("parts", "size")

    def __init__(self, start: bytes | bytearray) -> None:
        self.parts: list[bytes] = [bytes(start)] if start else []
        self.size = len(start)

    def __iadd__(self, piece: bytes) -> _Pieces:
        self.parts.append(piece)
        self.size += len(piece)
        return self

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        if len(self.parts) == 1 and type(self.parts[0]) is bytes:
            return self.parts[0]
        return b"".join(self.parts)


class BodyPiecesProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, keeping a body's pieces as they arrive."""

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle  # None for an upgrade request's body: uvicorn's own check drops it
        if cycle is not None and type(cycle.body) is bytearray:  # then handed over as bytes(body)
            cycle.body = _Pieces(cycle.body)
        super().on_body(body)

