"""HTTP routes for /v1/pyhf: validate, call the domain function through the runner, encode."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response

from labcrunch_service import encoding
from labcrunch_service.compute import Task, Timed
from labcrunch_service.http.bodies import JsonBodyRoute
from labcrunch_service.http.deps import LimitsDep, RunnerDep
from labcrunch_service.http.problems import problem_responses
from labcrunch_service.http.responses import accepts, json_response, npz_response
from labcrunch_service.pyhf import checks
from labcrunch_service.pyhf.schemas import (
    BatchFitResponse,
    FitRequest,
    FitResponse,
    HypotestRequest,
    HypotestResponse,
    ScanRequest,
    ScanResponse,
    UpperLimitRequest,
    UpperLimitResponse,
)

router = APIRouter(prefix="/v1/pyhf", tags=["pyhf"], route_class=JsonBodyRoute)
#: Run once in every compute process at start-up (settings.warmup): compiles the hot path.
WARMUP = Task("labcrunch_service.pyhf.fit:warmup")

BACKEND = "jax"  # pyhf's backend, chosen once per compute process (labcrunch_service.backends.configure)
FIT = Task("labcrunch_service.pyhf.fit:fit")
SCAN = Task("labcrunch_service.pyhf.scan:scan")
HYPOTEST = Task("labcrunch_service.pyhf.inference:hypotest")
UPPER_LIMIT = Task("labcrunch_service.pyhf.inference:upper_limit")


def _answer(timed: Timed[dict[str, Any]]) -> Response:
    return json_response({**timed.result, "backend": BACKEND, "device": timed.device(BACKEND),
                          "elapsed_ms": timed.elapsed_ms})


def _scan_npz(timed: Timed[dict[str, Any]]) -> Response:
    """A scan as .npz: the JSON answer's fields as arrays (``gradient`` flattened to d_dx, d_dy)."""
    result = dict(timed.result)
    gradient = result.pop("gradient")
    device = timed.device(BACKEND)
    arrays = {k: (np.asarray(v, dtype=str) if isinstance(v, list | str) else np.asarray(v))
              for k, v in {**result, **gradient, "backend": BACKEND, "device": device}.items()}
    arrays["elapsed_ms"] = np.float64(timed.elapsed_ms)
    return npz_response(arrays, headers={"X-Elapsed-Ms": f"{timed.elapsed_ms:.3f}", "X-Device": device})


_SCAN_RESPONSES = {
    **problem_responses(),
    200: {"content": {encoding.NPZ_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
          "description": "JSON, or .npz when the request says `Accept: application/x-npz`."},
}


# Each route refuses over-large work before it is queued; the domain function checks again.
@router.post("/fit", response_model=FitResponse | BatchFitResponse, responses=problem_responses())
async def fit(body: FitRequest, runner: RunnerDep, limits: LimitsDep) -> Response:
    """Best fit with the exact Hessian of −2 ln L, covariance = 2·inv(Hessian) over the free
    parameters, correlation, uncertainties and confidence ellipses; for a list of datasets, a
    batch fit (best fit, −2 ln L and uncertainties per dataset)."""
    checks.check_fit(body, limits)
    return _answer(await runner.run(FIT, body, limits))


@router.post("/scan", response_model=ScanResponse, responses=_SCAN_RESPONSES)
async def scan(body: ScanRequest, request: Request, runner: RunnerDep, limits: LimitsDep) -> Response:
    """logpdf (or twice_nll) on a grid over two parameters, the others at the best fit (or
    profiled), and its gradient on a coarser grid; .npz with `Accept: application/x-npz`."""
    checks.check_scan(body, limits)
    timed = await runner.run(SCAN, body, limits)
    return _scan_npz(timed) if accepts(request, encoding.NPZ_MEDIA_TYPE) else _answer(timed)


@router.post("/hypotest", response_model=HypotestResponse, responses=problem_responses())
async def hypotest(body: HypotestRequest, runner: RunnerDep, limits: LimitsDep) -> Response:
    """CLs, CLs+b and CLb (q0: the discovery p-value p0) at one or many POI values, asymptotic
    or from toys (expected band on request)."""
    checks.check_hypotest(body, limits)
    return _answer(await runner.run(HYPOTEST, body, limits))


@router.post("/upper-limit", response_model=UpperLimitResponse, responses=problem_responses())
async def upper_limit(body: UpperLimitRequest, runner: RunnerDep, limits: LimitsDep) -> Response:
    """Observed and expected (−2σ..+2σ) upper limits on the POI from a grid of CLs values
    (asymptotic or from toys); null outside the grid."""
    checks.check_upper_limit(body, limits)
    return _answer(await runner.run(UPPER_LIMIT, body, limits))

