"""HTTP routes for /v1/fit/line: validate, call the domain function through the runner, encode.

One route, two body formats: JSON (points and options in the body), or a ``.npy`` array of
shape (N, 2) [x, y] or (N, 3) [x, y, sigma] with the options as query parameters — the
practical way to send 10^6 points and more::

    python -c "import numpy as np; x = np.arange(1e6); np.save('points.npy', np.c_[x, 2.5 * x + 1.2])"
    curl -X POST 'http://127.0.0.1:8000/v1/fit/line?method=least_squares' \\
         -H 'Content-Type: application/x-npy' --data-binary @points.npy
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from labcrunch_service import encoding
from labcrunch_service.compute import Task
from labcrunch_service.fit.line import LineFit  # numpy only: the result type, not the fit
from labcrunch_service.fit.schemas import (
    REQUEST_BODY,
    FitLineRequest,
    FitLineResponse,
    FitOptions,
    FitQuery,
    options_from_query,
)
from labcrunch_service.http.bodies import json_or_binary
from labcrunch_service.http.deps import LimitsDep, RunnerDep
from labcrunch_service.http.problems import problem_responses
from labcrunch_service.http.responses import json_response

router = APIRouter(prefix="/v1/fit/line", tags=["fit"])
#: Run once in every compute process at start-up (settings.warmup): compiles the hot path.
WARMUP = Task("labcrunch_service.fit.fitting:warmup")

POINT_COLUMNS = ("x", "y", "sigma")  # of a .npy body; sigma is optional
FIT_LINE = Task("labcrunch_service.fit.fitting:fit_line")


def _fit_payload(fit: LineFit) -> dict[str, Any]:
    return {"m": fit.m, "q": fit.q, "uncertainty": fit.uncertainty, "covariance": fit.covariance,
            "covariance_scaled": fit.covariance_scaled, "correlation": fit.correlation,
            "chi2": fit.chi2, "ndf": fit.ndf, "method": fit.method, "backend": fit.backend,
            "diverged": fit.diverged, "history": fit.history}


@router.post(
    "",
    summary="Fit a straight line y = m·x + q, with uncertainties",
    description=(
        "Least squares (closed form, weighted by 1/σ² when `sigma` is given) or minibatch gradient "
        "descent on JAX (optax) or TensorFlow (Keras). The body is JSON, or a .npy array of shape "
        "(N, 2)/(N, 3) sent as `Content-Type: application/x-npy` with the options as query "
        "parameters, e.g. `curl -X POST '.../v1/fit/line?method=least_squares' -H "
        "'Content-Type: application/x-npy' --data-binary @points.npy`."),
    response_model=FitLineResponse,
    responses=problem_responses(401, 413, 415, 422, 429, 500, 503),
    openapi_extra={"requestBody": REQUEST_BODY},
)
async def fit_line_route(
    request: Request,
    query: Annotated[FitQuery, Query()],  # type: ignore[valid-type]
    runner: RunnerDep,
    limits: LimitsDep,
) -> Response:
    content = await json_or_binary(request, FitLineRequest, encoding.NPY_MEDIA_TYPE)
    if isinstance(content, bytes):
        # Reading up to limits.max_body_bytes of .npy is slow enough to keep off the event loop.
        columns = await run_in_threadpool(
            encoding.read_npy_columns, content, POINT_COLUMNS, required=2,
            max_rows=limits.max_fit_points, limit="max_fit_points")
        x, y, sigma = columns["x"], columns["y"], columns.get("sigma")
        options: FitOptions = options_from_query(query)
    else:
        x, y, sigma, options = content.x, content.y, content.sigma, content
    timed = await runner.run(FIT_LINE, x, y, sigma, method=options.method, backend=options.backend,
                             descent=options.descent(), limits=limits)
    payload = _fit_payload(timed.result)
    device = "cpu" if timed.result.backend == "numpy" else timed.device(timed.result.backend)
    payload |= {"device": device, "elapsed_ms": timed.elapsed_ms}
    return json_response(payload)

