"""HTTP routes for /v1/pyhf: validate, call the domain function through the runner, encode."""

from __future__ import annotations

import math
import threading
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, model_validator

from labcrunch_service import backends, encoding
from labcrunch_service.compute import Timed
from labcrunch_service.http.deps import LimitsDep, RunnerDep
from labcrunch_service.http.problems import problem_responses
from labcrunch_service.pyhf import fit as fitting
from labcrunch_service.pyhf import inference, models
from labcrunch_service.pyhf import scan as scanning
from labcrunch_service.settings import Limits, Settings

router = APIRouter(prefix="/v1/pyhf", tags=["pyhf"])

BACKEND = "jax"  # pyhf's backend, chosen once at start-up (labcrunch_service.backends.configure)


# --- request schemas ------------------------------------------------------------------------
class SimpleModel(BaseModel):
    """One of pyhf's simple models: signal + background with an uncorrelated (shapesys) or a
    correlated (histosys) background uncertainty."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["uncorrelated_background", "correlated_background"]
    signal: list[FiniteFloat] = Field(min_length=1)
    bkg: list[FiniteFloat] = Field(min_length=1)
    bkg_uncertainty: list[FiniteFloat] | None = Field(None, description="uncorrelated_background only.")
    bkg_up: list[FiniteFloat] | None = Field(None, description="correlated_background only.")
    bkg_down: list[FiniteFloat] | None = Field(None, description="correlated_background only.")


class ModelIn(BaseModel):
    """Exactly one of ``simple`` or ``workspace`` (a pyhf JSON workspace, schema 1.0.0)."""

    model_config = ConfigDict(extra="forbid")
    simple: SimpleModel | None = None
    workspace: dict[str, Any] | None = None
    measurement: str | None = Field(None, description="Workspace measurement (default: the first).")
    patches: list[list[dict[str, Any]]] | None = Field(
        None, description="JSON patches (RFC 6902), each a list of operations on the model spec "
        "{channels, parameters}, applied in order.")

    @model_validator(mode="after")
    def _one_kind(self) -> ModelIn:
        if (self.simple is None) == (self.workspace is None):
            raise ValueError("give exactly one of 'simple' or 'workspace'")
        if self.simple is not None and (self.measurement is not None or self.patches is not None):
            raise ValueError("'measurement' and 'patches' apply to a workspace only")
        return self


class PyhfRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: ModelIn
    data: Literal["asimov", "observed"] | list[FiniteFloat] = Field(
        "asimov", description="'asimov', 'observed' (workspace), main-bin counts (auxiliary data "
        "appended) or the full data vector.")
    asimov_pars: dict[str, FiniteFloat] | None = Field(
        None, description="Parameter values for the Asimov data (others: suggested init).")
    init_pars: dict[str, FiniteFloat] | None = Field(None, description="Initial values by parameter name.")
    par_bounds: dict[str, tuple[FiniteFloat, FiniteFloat]] | None = Field(
        None, description="[low, high] by parameter name.")
    fixed_params: list[str] | None = Field(
        None, description="Parameters held at their initial value (besides the model's own fixed ones).")

    def fit_settings(self, optimizer: fitting.Optimizer = "scipy") -> fitting.FitSettings:
        return fitting.FitSettings(self.init_pars, self.par_bounds, self.fixed_params, optimizer)


class FitRequest(PyhfRequest):
    optimizer: Literal["scipy", "minuit"] = "scipy"
    ellipse_pairs: list[tuple[str, str]] | None = Field(
        None, description="Parameter pairs to draw ellipses for (default: the POI against up to "
        f"{fitting.DEFAULT_ELLIPSE_PAIRS} other free parameters).")
    confidence_levels: list[Annotated[float, Field(gt=0, lt=1)]] = Field(
        list(fitting.DEFAULT_CONFIDENCE_LEVELS), max_length=8)
    ellipse_region: Literal["joint", "projection"] = Field(
        "joint", description="'joint': both parameters together (Δχ² = 2.30, 6.18 for 68.27 %, "
        "95.45 %); 'projection': each axis' shadow is the 1-D interval (Δχ² = 1, 4).")


class ScanAxis(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    low: FiniteFloat
    high: FiniteFloat
    points: int = Field(101, ge=2)

    @model_validator(mode="after")
    def _ordered(self) -> ScanAxis:
        if not self.low < self.high:
            raise ValueError("low must be below high")
        if not math.isfinite(self.high - self.low):  # np.linspace would give NaN and inf points
            raise ValueError("high - low must be a finite number")
        return self


class ScanRequest(PyhfRequest):
    x: ScanAxis
    y: ScanAxis
    gradient_points: tuple[Annotated[int, Field(ge=2)], Annotated[int, Field(ge=2)]] = (11, 11)
    quantity: Literal["logpdf", "twice_nll"] = "logpdf"
    at: dict[str, FiniteFloat] | None = Field(
        None, description="Values of the other parameters (default: the best fit).")
    profile: bool = Field(
        False, description="Minimise the other free parameters at every point (one fit per point; "
        "limits.max_profile_points).")


class HypotestRequest(PyhfRequest):
    poi_values: FiniteFloat | list[FiniteFloat] = Field(description="One POI value or several.")
    test_stat: Literal["qtilde", "q"] = "qtilde"
    expected: bool = Field(False, description="Also return the expected CLs band (−2σ..+2σ).")


class ScanRange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: FiniteFloat
    stop: FiniteFloat
    points: int = Field(ge=2)


class UpperLimitRequest(PyhfRequest):
    scan: ScanRange | list[FiniteFloat] = Field(description="POI grid: {start, stop, points} or values.")
    level: float = Field(0.05, gt=0, lt=1, description="CLs threshold (0.05: 95 % CL).")
    test_stat: Literal["qtilde", "q"] = "qtilde"


# --- dependencies ---------------------------------------------------------------------------
_cache_lock = threading.Lock()


def get_model_cache(request: Request) -> models.ModelCache:
    """The app's model cache (one per app, sized by limits.model_cache_size)."""
    state = request.app.state
    with _cache_lock:
        if getattr(state, "pyhf_models", None) is None:
            state.pyhf_models = models.ModelCache(state.settings.limits.model_cache_size)
    return state.pyhf_models


ModelCacheDep = Annotated[models.ModelCache, Depends(get_model_cache)]


def _load(body: PyhfRequest, cache: models.ModelCache, limits: Limits):
    """In the worker: the (cached) model and the full data vector."""
    cm = models.model_from_spec(body.model.model_dump(), cache=cache,
                                max_parameters=limits.max_pyhf_parameters)
    return cm, models.resolve_data(cm, body.data, body.asimov_pars)


def _answer(timed: Timed[dict[str, Any]]) -> Response:
    payload = {**timed.result, "backend": BACKEND, "device": backends.device_for(BACKEND),
               "elapsed_ms": timed.elapsed_ms}
    return Response(encoding.dumps(encoding.jsonable(payload)), media_type="application/json")


def _scan_npz(timed: Timed[dict[str, Any]]) -> Response:
    """A scan as .npz: the JSON answer's fields as arrays (``gradient`` flattened to d_dx, d_dy)."""
    result = dict(timed.result)
    gradient = result.pop("gradient")
    device = backends.device_for(BACKEND)
    arrays = {k: (np.asarray(v, dtype=str) if isinstance(v, list | str) else np.asarray(v))
              for k, v in {**result, **gradient, "backend": BACKEND, "device": device}.items()}
    arrays["elapsed_ms"] = np.float64(timed.elapsed_ms)
    return Response(encoding.to_npz(arrays), media_type=encoding.NPZ_MEDIA_TYPE,
                    headers={"X-Elapsed-Ms": f"{timed.elapsed_ms:.3f}", "X-Device": device})


_SCAN_RESPONSES = {
    **problem_responses(),
    200: {"content": {encoding.NPZ_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
          "description": "JSON, or .npz when the request says `Accept: application/x-npz`."},
}


# --- routes ---------------------------------------------------------------------------------
@router.post("/fit", responses=problem_responses())
async def fit(body: FitRequest, runner: RunnerDep, limits: LimitsDep, cache: ModelCacheDep) -> Response:
    """Best fit with the autodiff Hessian of −2 ln L, covariance = 2·inv(Hessian) over the free
    parameters, correlation, uncertainties and confidence ellipses."""
    if body.ellipse_pairs is not None:
        fitting.check_ellipse_pair_count(len(body.ellipse_pairs), limits.max_ellipse_pairs)

    def job() -> dict[str, Any]:
        cm, data = _load(body, cache, limits)
        return fitting.fit(cm, data, body.fit_settings(body.optimizer), ellipse_pairs=body.ellipse_pairs,
                           confidence_levels=body.confidence_levels, ellipse_region=body.ellipse_region)

    return _answer(await runner.run(job))


@router.post("/scan", responses=_SCAN_RESPONSES)
async def scan(body: ScanRequest, request: Request, runner: RunnerDep, limits: LimitsDep,
               cache: ModelCacheDep) -> Response:
    """logpdf (or twice_nll) on a grid over two parameters, the others at the best fit (or
    profiled), and its gradient on a coarser grid; .npz with `Accept: application/x-npz`."""
    x = scanning.Axis(body.x.name, body.x.low, body.x.high, body.x.points)
    y = scanning.Axis(body.y.name, body.y.low, body.y.high, body.y.points)
    scanning.check_scan_size(x, y, body.gradient_points, limits.max_scan_points)  # before any work
    if body.profile:
        scanning.check_scan_size(x, y, body.gradient_points, limits.max_profile_points, "max_profile_points")

    def job() -> dict[str, Any]:
        cm, data = _load(body, cache, limits)
        return scanning.scan(cm, data, x, y, gradient_points=body.gradient_points, quantity=body.quantity,
                             at=body.at, fit_settings=body.fit_settings(), profile=body.profile,
                             max_points=limits.max_scan_points, max_profile_points=limits.max_profile_points)

    timed = await runner.run(job)
    return _scan_npz(timed) if encoding.NPZ_MEDIA_TYPE in request.headers.get("accept", "") else _answer(timed)


@router.post("/hypotest", responses=problem_responses())
async def hypotest(body: HypotestRequest, runner: RunnerDep, limits: LimitsDep,
                   cache: ModelCacheDep) -> Response:
    """Asymptotic CLs, CLs+b and CLb at one or many POI values (expected band on request)."""
    poi_values = body.poi_values if isinstance(body.poi_values, list) else [body.poi_values]
    inference.check_count(len(poi_values), limits.max_hypotest_points, "poi_values")  # before any work

    def job() -> dict[str, Any]:
        cm, data = _load(body, cache, limits)
        return inference.hypotest(cm, data, poi_values, settings=body.fit_settings(), test_stat=body.test_stat,
                                  expected=body.expected, max_points=limits.max_hypotest_points)

    return _answer(await runner.run(job))


@router.post("/upper-limit", responses=problem_responses())
async def upper_limit(body: UpperLimitRequest, runner: RunnerDep, limits: LimitsDep,
                      cache: ModelCacheDep) -> Response:
    """Observed and expected (−2σ..+2σ) upper limits on the POI from a grid of CLs values."""
    scan_grid = body.scan
    if isinstance(scan_grid, ScanRange):
        inference.check_count(scan_grid.points, limits.max_hypotest_points, "scan")  # before linspace
        scan_grid = inference.linear_scan(scan_grid.start, scan_grid.stop, scan_grid.points)
    inference.check_count(len(scan_grid), limits.max_hypotest_points, "scan")

    def job() -> dict[str, Any]:
        cm, data = _load(body, cache, limits)
        return inference.upper_limit(cm, data, scan_grid, level=body.level, settings=body.fit_settings(),
                                     test_stat=body.test_stat, max_points=limits.max_hypotest_points)

    return _answer(await runner.run(job))


def warmup(settings: Settings) -> None:
    """One small fit at start-up: loads pyhf's schemas and starts XLA, so the first request pays
    only its own model's compilation (the app's model cache starts empty)."""
    cache = models.ModelCache(1)
    spec = {"simple": {"kind": "uncorrelated_background", "signal": [5.0], "bkg": [10.0],
                       "bkg_uncertainty": [3.5]}}
    cm = models.model_from_spec(spec, cache=cache, max_parameters=settings.limits.max_pyhf_parameters)
    fitting.fit(cm, models.resolve_data(cm, "asimov"), fitting.FitSettings())
