"""The application factory: ``create_app(settings)`` builds a ready-to-serve FastAPI app."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from labcrunch_service import __version__
from labcrunch_service.compute import Runner
from labcrunch_service.fit import router as fit_routes
from labcrunch_service.fractal import router as fractal_routes
from labcrunch_service.gradient import router as gradient_routes
from labcrunch_service.http import health
from labcrunch_service.http import metrics as metrics_routes
from labcrunch_service.http.auth import AuthMiddleware
from labcrunch_service.http.deps import request_owner
from labcrunch_service.http.metrics import Metrics, MetricsMiddleware
from labcrunch_service.http.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from labcrunch_service.http.problems import install_problem_handlers
from labcrunch_service.jobs import router as jobs_routes
from labcrunch_service.jobs.manager import JobManager
from labcrunch_service.jobs.middleware import RespondAsyncMiddleware
from labcrunch_service.minimize import router as minimize_routes
from labcrunch_service.nn import router as nn_routes
from labcrunch_service.pyhf import router as pyhf_routes
from labcrunch_service.settings import Settings, get_settings
from labcrunch_service.web import router as web

log = logging.getLogger(__name__)

# Each domain's router module exposes `router` and `WARMUP`, a Task run once per worker process.
DOMAINS = (gradient_routes, minimize_routes, fit_routes, pyhf_routes, fractal_routes, nn_routes)
# The limit (a Limits field) on each domain's request bodies: what its routes can use, from a
# few numbers (fractal) to an .npz of max_points points (gradient). Other routes: max_body_bytes.
BODY_LIMITS = {gradient_routes: "max_gradient_body_bytes", minimize_routes: "max_minimize_body_bytes",
               fit_routes: "max_fit_body_bytes", pyhf_routes: "max_pyhf_body_bytes",
               fractal_routes: "max_fractal_body_bytes", nn_routes: "max_nn_body_bytes"}


def _start_workers(app: FastAPI) -> None:
    """Join (or start) the compute workers; /readyz turns 200 once each has warmed up."""
    scheduler = app.state.runner.scheduler
    scheduler.ready.wait()
    snapshot = scheduler.snapshot()
    app.state.warmup_errors.update(snapshot["warmup_errors"])
    if snapshot["error"]:  # /readyz stays 503 and says why in the log; /v1/info shows it
        app.state.warmup_errors["workers"] = snapshot["error"]
        return
    app.state.ready.set()
    log.info("ready", extra={"workers": [w["device"] for w in snapshot["workers"]]})


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # In a thread: starting Ray and the workers takes seconds, and /livez answers meanwhile.
    threading.Thread(target=_start_workers, args=(app,), name="workers", daemon=True).start()
    await app.state.jobs.start(app)  # runs again the jobs a stop or a crash left unfinished
    try:
        yield
    finally:
        await app.state.jobs.stop()
        app.state.runner.close()


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
    app.state.ready = threading.Event()
    app.state.warmup_errors = {}
    # Computations run in worker processes, each warmed up with every domain's WARMUP task.
    app.state.runner = Runner(settings, warmups=tuple(domain.WARMUP.path for domain in DOMAINS))
    app.state.jobs = JobManager(settings)
    app.state.metrics = Metrics(app.state.runner, app.state.jobs)
    install_problem_handlers(app)
    # Outermost last: the request id wraps everything, so a 413 carries one too; a job is made
    # from a request whose key and body size have been checked.
    app.add_middleware(RespondAsyncMiddleware, jobs=app.state.jobs)
    body_limits = {domain.router.prefix: limit for domain, limit in BODY_LIMITS.items()}
    app.add_middleware(BodySizeLimitMiddleware, limits=settings.limits, routes=body_limits)
    app.add_middleware(AuthMiddleware, api_keys=settings.api_keys, public_docs=settings.public_docs)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)  # counts refusals too
    app.add_middleware(RequestContextMiddleware)

    app.include_router(health.router)
    auth = [Depends(request_owner)]  # AuthMiddleware checks keys; this documents them
    app.include_router(health.info_router, dependencies=auth)
    app.include_router(metrics_routes.router)  # protected by AuthMiddleware, like /v1
    for domain in DOMAINS:
        app.include_router(domain.router, dependencies=auth)
    app.include_router(jobs_routes.router, dependencies=auth)
    web.install(app)
    return app
