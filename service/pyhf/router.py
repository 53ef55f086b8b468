"""HTTP routes for /v1/pyhf: validate, call the domain function through the runner, encode."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response

from labcrunch_service import backends, encoding
from labcrunch_service.compute import Timed
from labcrunch_service.http.deps import LimitsDep, RunnerDep
from labcrunch_service.http.problems import problem_responses
from labcrunch_service.http.responses import accepts, json_response, npz_response
from labcrunch_service.pyhf import fit as fitting
from labcrunch_service.pyhf import inference
from labcrunch_service.pyhf import scan as scanning
from labcrunch_service.pyhf.schemas import (
    FitRequest,
    FitResponse,
    HypotestRequest,
    HypotestResponse,
    ScanRequest,
    ScanResponse,
    UpperLimitRequest,
    UpperLimitResponse,
)
from labcrunch_service.settings import Settings

router = APIRouter(prefix="/v1/pyhf", tags=["pyhf"])

BACKEND = "jax"  # pyhf's backend, chosen once at start-up (labcrunch_service.backends.configure)


def _answer(timed: Timed[dict[str, Any]]) -> Response:
    return json_response({**timed.result, "backend": BACKEND, "device": backends.device_for(BACKEND),
                          "elapsed_ms": timed.elapsed_ms})


def _scan_npz(timed: Timed[dict[str, Any]]) -> Response:
    """A scan as .npz: the JSON answer's fields as arrays (``gradient`` flattened to d_dx, d_dy)."""
    result = dict(timed.result)
    gradient = result.pop("gradient")
    device = backends.device_for(BACKEND)
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
@router.post("/fit", response_model=FitResponse, responses=problem_responses())
async def fit(body: FitRequest, runner: RunnerDep, limits: LimitsDep) -> Response:
    """Best fit with the autodiff Hessian of −2 ln L, covariance = 2·inv(Hessian) over the free
    parameters, correlation, uncertainties and confidence ellipses."""
    fitting.check_fit(body, limits)
    return _answer(await runner.run(fitting.fit, body, limits))


@router.post("/scan", response_model=ScanResponse, responses=_SCAN_RESPONSES)
async def scan(body: ScanRequest, request: Request, runner: RunnerDep, limits: LimitsDep) -> Response:
    """logpdf (or twice_nll) on a grid over two parameters, the others at the best fit (or
    profiled), and its gradient on a coarser grid; .npz with `Accept: application/x-npz`."""
    scanning.check_scan(body, limits)
    timed = await runner.run(scanning.scan, body, limits)
    return _scan_npz(timed) if accepts(request, encoding.NPZ_MEDIA_TYPE) else _answer(timed)


@router.post("/hypotest", response_model=HypotestResponse, responses=problem_responses())
async def hypotest(body: HypotestRequest, runner: RunnerDep, limits: LimitsDep) -> Response:
    """Asymptotic CLs, CLs+b and CLb at one or many POI values (expected band on request)."""
    inference.check_hypotest(body, limits)
    return _answer(await runner.run(inference.hypotest, body, limits))


@router.post("/upper-limit", response_model=UpperLimitResponse, responses=problem_responses())
async def upper_limit(body: UpperLimitRequest, runner: RunnerDep, limits: LimitsDep) -> Response:
    """Observed and expected (−2σ..+2σ) upper limits on the POI from a grid of CLs values."""
    inference.check_upper_limit(body, limits)
    return _answer(await runner.run(inference.upper_limit, body, limits))


def warmup(settings: Settings) -> None:
    """One small fit at start-up: loads pyhf's schemas and starts XLA, so the first request pays
    only its own model's compilation (this model stays in the model cache)."""
    seed = {"simple": {"kind": "uncorrelated_background", "signal": [5.0], "bkg": [10.0],
                       "bkg_uncertainty": [3.5]}}
    fitting.fit(FitRequest.model_validate({"model": seed, "data": "asimov"}), settings.limits)
