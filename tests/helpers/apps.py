"""An app with test-only routes (a slow job, a CPU-bound job reporting progress, a validated body,
a crash, a raw body reader); ``python -m tests.helpers.apps PORT`` serves it (settings from the
environment) for tests against a real server process."""

from __future__ import annotations

from fastapi import Request
from pydantic import BaseModel

from labcrunch_service.app import create_app
from labcrunch_service.errors import LimitExceeded
from labcrunch_service.http.deps import RunnerDep
from labcrunch_service.settings import Limits, Settings
from tests.helpers import data_dir, tasks


class Echo(BaseModel):
    n: int


def make_app(**overrides) -> object:
    """An app with extra test-only routes: a slow job, a CPU-bound one, a validated body, a crash."""
    limits = overrides.pop("limits", Limits())
    overrides.setdefault("data_dir", data_dir())
    app = create_app(Settings(warmup=False, load_tensorflow=False, limits=limits, **overrides))

    async def slow(runner: RunnerDep, seconds: float = 0.5) -> dict:
        timed = await runner.run(tasks.SLEEP, seconds)
        return {"elapsed_ms": timed.elapsed_ms}

    async def burn(runner: RunnerDep, steps: int = 10, seconds_each: float = 0.05) -> dict:
        if steps > 100_000:  # a limit checked before the runner: a 413 is answered at once
            raise LimitExceeded("Too many steps.", limit="steps", maximum=100_000, value=steps)
        timed = await runner.run(tasks.BURN_STEPS, steps, seconds_each)
        return {"steps": timed.result, "elapsed_ms": timed.elapsed_ms}

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
    app.add_api_route("/v1/test/burn", burn, methods=["POST"])
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


if __name__ == "__main__":
    import os
    import sys

    import uvicorn

    from labcrunch_service.logs import configure_logging

    configure_logging("INFO", True)
    uvicorn.run(make_app(log_json=True, data_dir=os.environ["LABCRUNCH_DATA_DIR"]), host="127.0.0.1",
                port=int(sys.argv[1]), log_config=None, access_log=False)
