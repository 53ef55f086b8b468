"""The application factory: ``create_app(settings)`` builds a ready-to-serve FastAPI app."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from labcrunch_service import __version__, backends, cache
from labcrunch_service.compute import Runner
from labcrunch_service.fit import router as fit_routes
from labcrunch_service.fractal import router as fractal_routes
from labcrunch_service.gradient import router as gradient_routes
from labcrunch_service.http import health
from labcrunch_service.http.auth import AuthMiddleware
from labcrunch_service.http.deps import request_owner
from labcrunch_service.http.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from labcrunch_service.http.problems import install_problem_handlers
from labcrunch_service.minimize import router as minimize_routes
from labcrunch_service.nn import router as nn_routes
from labcrunch_service.pyhf import router as pyhf_routes
from labcrunch_service.settings import Settings, get_settings
from labcrunch_service.web import router as web

log = logging.getLogger(__name__)

# Each domain's router module exposes `router` and `WARMUP`, a Task run once per compute process.
DOMAINS = (gradient_routes, minimize_routes, fit_routes, pyhf_routes, fractal_routes, nn_routes)
# The limit (a Limits field) on each domain's request bodies: what its routes can use, from a
# few numbers (fractal) to an .npz of max_points points (gradient). Other routes: max_body_bytes.
BODY_LIMITS = {gradient_routes: "max_gradient_body_bytes", minimize_routes: "max_minimize_body_bytes",
               fit_routes: "max_fit_body_bytes", pyhf_routes: "max_pyhf_body_bytes",
               fractal_routes: "max_fractal_body_bytes", nn_routes: "max_nn_body_bytes"}


def _warm_up(app: FastAPI, settings: Settings) -> None:
    """Import the frameworks and compile hot paths; /readyz turns 200 when this returns."""
    try:
        backends.configure()
        if settings.load_tensorflow:
            backends.tensorflow_available()
        if settings.warmup:
            for domain in DOMAINS:
                try:
                    domain.WARMUP.resolve()(settings)
                except Exception as exc:  # a failed warm-up degrades one domain, not the service
                    log.exception("warm-up of %s failed", domain.WARMUP.path)
                    app.state.warmup_errors[domain.WARMUP.path] = f"{type(exc).__name__}: {exc}"
    finally:
        app.state.ready.set()
        log.info("ready", extra={"device": backends.jax_device()})


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    threading.Thread(target=_warm_up, args=(app, settings), name="warmup", daemon=True).start()
    try:
        yield
    finally:
        app.state.runner.shutdown()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="labcrunch",
        version=__version__,
        summary="Derivatives, minimization, fits, HistFactory likelihoods, fractals and dense networks "
        "on JAX and TensorFlow, behind one HTTP API.",
        lifespan=_lifespan,
        docs_url=None,  # /docs and /redoc come from web.install, with local assets
        redoc_url=None,
    )
    app.state.settings = settings
    cache.configure(settings)  # compiled-function and model caches are per process
    app.state.ready = threading.Event()
    app.state.warmup_errors = {}
    app.state.runner = Runner(
        settings.max_concurrent_jobs,
        settings.max_queued_jobs,
        retry_after=settings.retry_after_seconds,
        wall_seconds=settings.limits.max_wall_seconds,
    )
    install_problem_handlers(app)
    # Outermost last: the request id wraps everything, so a 413 carries one too.
    body_limits = {domain.router.prefix: limit for domain, limit in BODY_LIMITS.items()}
    app.add_middleware(BodySizeLimitMiddleware, limits=settings.limits, routes=body_limits)
    app.add_middleware(AuthMiddleware, api_keys=settings.api_keys, public_docs=settings.public_docs)
    app.add_middleware(RequestContextMiddleware)

    app.include_router(health.router)
    auth = [Depends(request_owner)]  # AuthMiddleware checks keys; this documents them
    app.include_router(health.info_router, dependencies=auth)
    for domain in DOMAINS:
        app.include_router(domain.router, dependencies=auth)
    web.install(app)
    return app
