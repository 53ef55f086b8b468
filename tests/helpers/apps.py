"""An app with test-only routes (a slow job, a validated body, a crash, a raw body reader, the
client's port), in process or served."""

from __future__ import annotations

from fastapi import Request
from pydantic import BaseModel

from labcrunch_service.app import create_app
from labcrunch_service.settings import Limits, Settings
from tests.helpers import tasks


class Echo(BaseModel):
    n: int


def make_app(**overrides) -> object:
    """An app with extra test-only routes: a slow job, a validated body, a crash."""
    limits = overrides.pop("limits", Limits())
    app = create_app(Settings(warmup=False, load_tensorflow=False, limits=limits, **overrides))

    async def slow(request: Request, seconds: float = 0.5) -> dict:
        timed = await request.app.state.runner.run(tasks.SLEEP, seconds)
        return {"elapsed_ms": timed.elapsed_ms}

    async def echo(body: Echo) -> dict:
        return {"n": body.n}

    async def crash() -> dict:
        raise RuntimeError("secret internal detail")

    async def raw(request: Request) -> dict:
        body = await request.body()
        request.app.state.raw_bodies.append(body)
        return {"bytes": len(body)}

    async def peer(request: Request) -> dict:
        """The client's port: two requests from one port came over one connection."""
        return {"port": request.client.port if request.client else None}

    app.state.raw_bodies = []
    app.add_api_route("/v1/test/slow", slow, methods=["POST"])
    app.add_api_route("/v1/test/raw", raw, methods=["POST"])
    app.add_api_route("/v1/test/echo", echo, methods=["POST"])
    app.add_api_route("/v1/test/crash", crash, methods=["GET"])
    app.add_api_route("/v1/test/peer", peer, methods=["GET"])
    return app


#: The API key of :func:`served_app`.
SERVED_KEY = "k-served"


def served_app() -> object:
    """:func:`make_app` with an API key and the settings of ``LABCRUNCH_*``, for a server
    process (``uvicorn --factory tests.helpers.apps:served_app``)."""
    return make_app(limits=Settings().limits, api_keys={"tester": SERVED_KEY})
