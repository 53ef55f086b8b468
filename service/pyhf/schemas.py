"""Requests and answers of /v1/pyhf: the pydantic models of every route's body and JSON answer.

Field names that mirror pyhf's own API (``bkg``, ``init_pars``, ``par_bounds``, ``fixed_params``,
``test_stat``, ``twice_nll``, ``cls``...) keep pyhf's spelling.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from labcrunch_service.schemas import Boolean, FiniteFloat, Integer, Number, integer

# Without explicit pairs, ellipses are drawn for the POI against this many other parameters.
DEFAULT_ELLIPSE_PAIRS = 8
DEFAULT_CONFIDENCE_LEVELS = (0.6827, 0.9545)

TestStat = Literal["qtilde", "q", "q0"]
LimitTestStat = Literal["qtilde", "q"]
CalcType = Literal["asymptotics", "toybased"]
Optimizer = Literal["newton", "scipy", "minuit"]
Quantity = Literal["logpdf", "twice_nll"]
DEFAULT_NTOYS = 1000


# --- requests -------------------------------------------------------------------------------
class SimpleModel(BaseModel):
    """One of pyhf's simple models: signal + background with an uncorrelated (shapesys) or a
    correlated (histosys) background uncertainty."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": [  # what each kind needs
        {"properties": {"kind": {"const": "uncorrelated_background"}},
         "required": ["kind", "signal", "bkg", "bkg_uncertainty"]},
        {"properties": {"kind": {"const": "correlated_background"}},
         "required": ["kind", "signal", "bkg", "bkg_up", "bkg_down"]}]})
    kind: Literal["uncorrelated_background", "correlated_background"]
    signal: list[FiniteFloat] = Field(min_length=1)
    bkg: list[FiniteFloat] = Field(min_length=1)
    bkg_uncertainty: list[FiniteFloat] | None = Field(None, description="uncorrelated_background only.")
    bkg_up: list[FiniteFloat] | None = Field(None, description="correlated_background only.")
    bkg_down: list[FiniteFloat] | None = Field(None, description="correlated_background only.")


class NormsysInterpolation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    interpcode: Literal["code1", "code4"] = Field(
        description="code1: piecewise exponential; code4: exponential outside |α| > 1, a smooth "
        "polynomial inside (pyhf's default).")


class HistosysInterpolation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    interpcode: Literal["code0", "code2", "code4p"] = Field(
        description="code0: piecewise linear; code2: quadratic inside |α| < 1, linear outside; "
        "code4p: linear outside, a smooth polynomial inside (pyhf's default).")


class ModifierSettings(BaseModel):
    """pyhf's ``modifier_settings``: the interpolation code of each modifier type (a type left
    out keeps pyhf's default: normsys code4, histosys code4p)."""

    model_config = ConfigDict(extra="forbid")
    normsys: NormsysInterpolation | None = None
    histosys: HistosysInterpolation | None = None


# ModelIn's rule (exactly one kind of model), for the OpenAPI document.
_SIMPLE_OR_WORKSPACE = [
    {"title": "simple", "required": ["simple"],
     "properties": {"simple": {"type": "object"}, "workspace": {"type": "null"},
                    "measurement": {"type": "null"}, "patches": {"type": "null"}}},
    {"title": "workspace", "required": ["workspace"],
     "properties": {"simple": {"type": "null"}, "workspace": {
         "type": "object", "required": ["channels", "measurements", "observations", "version"],
         "properties": {"channels": {"type": "array", "minItems": 1},
                        "measurements": {"type": "array", "minItems": 1},
                        "observations": {"type": "array", "minItems": 1},
                        "version": {"const": "1.0.0"}}}}},
]


class ModelIn(BaseModel):
    """Exactly one of ``simple`` or ``workspace`` (a pyhf JSON workspace, schema 1.0.0)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": _SIMPLE_OR_WORKSPACE})
    simple: SimpleModel | None = None
    workspace: dict[str, Any] | None = None
    measurement: str | None = Field(None, description="Workspace measurement (default: the first).")
    patches: list[list[dict[str, Any]]] | None = Field(
        None, description="JSON patches (RFC 6902), each a list of operations on the model spec "
        "{channels, parameters}, applied in order.")
    modifier_settings: ModifierSettings | None = Field(
        None, description="Interpolation codes, e.g. {\"normsys\": {\"interpcode\": \"code1\"}, "
        "\"histosys\": {\"interpcode\": \"code0\"}} (default: pyhf's, code4 and code4p).")

    @model_validator(mode="after")
    def _one_kind(self) -> ModelIn:
        if (self.simple is None) == (self.workspace is None):
            raise ValueError("give exactly one of 'simple' or 'workspace'")
        if self.simple is not None and (self.measurement is not None or self.patches is not None):
            raise ValueError("'measurement' and 'patches' apply to a workspace only")
        return self


class PyhfRequest(BaseModel):
    """What every /v1/pyhf request has: the model, the data and the fit options."""

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


class OptimizerOptions(BaseModel):
    """How the fits are done (fit, hypotest, upper-limit)."""

    optimizer: Optimizer = Field(
        "newton", description="newton: a bounded Newton method on the exact Hessian, compiled once "
        "per model; scipy: pyhf's SLSQP; minuit: pyhf's MINUIT (both one fit at a time).")
    do_grad: Boolean | None = Field(
        None, description="scipy and minuit: gradients by autodiff (true) or by the optimizer's "
        "finite differences (false, as pyhf's numpy backend); default: pyhf's choice on JAX (true).")


class FitRequest(OptimizerOptions, PyhfRequest):
    data: Literal["asimov", "observed"] | list[FiniteFloat] | list[list[FiniteFloat]] = Field(
        "asimov", description="'asimov', 'observed' (workspace), main-bin counts (auxiliary data "
        "appended) or the full data vector; or a list of datasets (each counts or a full vector), "
        "fitted as one batch.")
    ellipse_pairs: list[tuple[str, str]] | None = Field(
        None, description="Parameter pairs to draw ellipses for (default: the POI against up to "
        f"{DEFAULT_ELLIPSE_PAIRS} other free parameters).")
    confidence_levels: list[Annotated[FiniteFloat, Field(gt=0, lt=1)]] = Field(
        list(DEFAULT_CONFIDENCE_LEVELS), max_length=8)
    ellipse_region: Literal["joint", "projection"] = Field(
        "joint", description="'joint': both parameters together (Δχ² = 2.30, 6.18 for 68.27 %, "
        "95.45 %); 'projection': each axis' shadow is the 1-D interval (Δχ² = 1, 4).")


class ScanAxis(BaseModel):
    """A grid axis from ``low`` to ``high``; ``low < high`` (JSON Schema cannot say so)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    low: FiniteFloat = Field(description="Below high.")
    high: FiniteFloat = Field(description="Above low; high - low must be finite.")
    points: Integer = Field(101, ge=2)

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
    gradient_points: tuple[integer(ge=2), integer(ge=2)] = (11, 11)
    quantity: Quantity = "logpdf"
    at: dict[str, FiniteFloat] | None = Field(
        None, description="Values of the other parameters (default: the best fit).")
    profile: Boolean = Field(
        False, description="Minimize the other free parameters at every point (one fit per point; "
        "limits.max_profile_points).")


class ToyOptions(BaseModel):
    """Asymptotic formulae or pseudo-experiments."""

    calctype: CalcType = Field("asymptotics", description="asymptotics, or toybased: the test "
                               "statistic's distributions from pseudo-experiments.")
    ntoys: Integer = Field(DEFAULT_NTOYS, ge=1, description="toybased: pseudo-experiments per POI value "
                       "for each of s+b and b (limits.max_toys).")
    seed: integer(ge=0, le=2**53) | None = Field(None, description="toybased: the random seed (default: "
                             "a fresh one, returned in the answer).")


# HypotestRequest's rule (q0 tests μ = 0 only; the other statistics need POI values), for the
# OpenAPI document.
_POI_VALUES_FOR_THE_STATISTIC = [
    {"title": "discovery (q0)", "required": ["test_stat"],
     "properties": {"test_stat": {"const": "q0"}, "poi_values": {"anyOf": [
         {"type": "null"}, {"const": 0}, {"type": "array", "items": {"const": 0}}]}}},
    {"title": "qtilde or q", "required": ["poi_values"],
     "properties": {"test_stat": {"enum": ["qtilde", "q"]}, "poi_values": {"not": {"type": "null"}}}},
]


class HypotestRequest(ToyOptions, OptimizerOptions, PyhfRequest):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": _POI_VALUES_FOR_THE_STATISTIC})
    poi_values: FiniteFloat | list[FiniteFloat] | None = Field(
        None, description="One POI value or several (q0: 0, the default).")
    test_stat: TestStat = Field("qtilde", description="qtilde, q, or q0 (discovery: tests μ = 0).")
    expected: Boolean = Field(False, description="Also return the expected band (−2σ..+2σ).")

    @model_validator(mode="after")
    def _poi_values_for_the_statistic(self) -> HypotestRequest:
        values = self.poi_values if isinstance(self.poi_values, list) else [self.poi_values]
        if self.test_stat == "q0":
            if self.poi_values is not None and any(v != 0 for v in values):
                raise ValueError("the discovery statistic q0 tests poi_values 0 only")
        elif self.poi_values is None:
            raise ValueError("poi_values is required (it may be left out only with test_stat q0)")
        return self


class ScanRange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: FiniteFloat
    stop: FiniteFloat
    points: Integer = Field(ge=2)


class UpperLimitRequest(ToyOptions, OptimizerOptions, PyhfRequest):
    scan: ScanRange | list[FiniteFloat] = Field(description="POI grid: {start, stop, points} or values.")
    level: FiniteFloat = Field(0.05, gt=0, lt=1, description="CLs threshold (0.05: 95 % CL).")
    test_stat: LimitTestStat = "qtilde"


# --- answers --------------------------------------------------------------------------------
class Computed(BaseModel):
    """Where and how long: every /v1/pyhf answer ends with these."""

    backend: Literal["jax"]
    device: str
    elapsed_ms: float


class Ellipse(BaseModel):
    parameters: tuple[str, str]
    center: tuple[float, float] = Field(description="The best fit of the two parameters.")
    semi_axes: tuple[float, float] = Field(description="(major, minor).")
    angle_deg: float = Field(description="Of the major axis from the x axis, anticlockwise, in (-90, 90].")
    confidence_level: float
    delta_chi2: float
    region: Literal["joint", "projection"]


class FitResponse(Computed):
    parameters: list[str]
    poi: str | None
    bestfit: list[float]
    twice_nll: Number
    free_parameters: list[str]
    fixed: list[str]
    hessian: list[list[Number]] = Field(description="Of twice_nll, over the free parameters.")
    covariance: list[list[Number]] = Field(description="2·inv(hessian); NaN when the Hessian is not "
                                           "positive definite (see warnings).")
    correlation: list[list[Number]]
    uncertainties: list[Number] = Field(description="One per parameter; 0 for fixed ones.")
    converged: bool
    optimizer: Optimizer
    ellipses: list[Ellipse]
    warnings: list[str] = Field(description="Fits that did not converge, parameters that ended on "
                                "a bound (their Hessian entry is the curvature there, not an "
                                "uncertainty), covariances that could not be formed.")


class BatchFitResponse(Computed):
    """A batch fit (``data`` a list of datasets): one row per dataset."""

    parameters: list[str]
    poi: str | None
    datasets: int
    bestfit: list[list[float]]
    twice_nll: list[Number]
    free_parameters: list[str]
    fixed: list[str]
    uncertainties: list[list[Number]] = Field(description="Per dataset, sqrt(diag(2·inv(hessian))); "
                                              "0 for fixed parameters, NaN where the Hessian is not "
                                              "positive definite.")
    converged: list[bool]
    optimizer: Optimizer
    warnings: list[str]


class ScanGradient(BaseModel):
    d_dx: list[list[Number]]
    d_dy: list[list[Number]]


class ScanResponse(Computed):
    parameters: tuple[str, str]
    quantity: Quantity
    x: list[float]
    y: list[float]
    values: list[list[Number]] = Field(description="values[j][i] at (x[i], y[j]).")
    gradient_x: list[float]
    gradient_y: list[float]
    gradient: ScanGradient = Field(description="d/dx and d/dy of the quantity on the gradient grid.")
    center: Literal["bestfit", "given"] = Field(description="Where the other parameters sit.")
    profiled: bool
    base_parameters: list[str]
    base: list[float] = Field(description="The other parameters' values (by base_parameters).")
    warnings: list[str]


class HypotestResponse(Computed):
    poi: str
    poi_values: list[float]
    test_stat: TestStat
    calctype: CalcType
    optimizer: Optimizer
    cls: list[Number]
    clsb: list[Number]
    clb: list[Number]
    cls_expected: list[list[Number]] | None = Field(
        None, description="With expected: one row per POI value, CLs at expected_sigmas.")
    expected_sigmas: list[int] | None = None
    p0: list[Number] | None = Field(
        None, description="q0: the discovery p-value (pyhf's CLs+b of the μ = 0 test; = clsb).")
    p0_expected: list[list[Number]] | None = Field(
        None, description="q0 with expected: the expected p0 at expected_sigmas.")
    ntoys: int | None = Field(None, description="toybased: pseudo-experiments for each of s+b and b.")
    seed: int | None = Field(None, description="toybased: the seed that reproduces these toys.")
    cls_uncertainty: list[Number] | None = Field(None, description="toybased: Monte-Carlo uncertainty "
                                                 "(binomial, propagated to the ratio).")
    clsb_uncertainty: list[Number] | None = None
    clb_uncertainty: list[Number] | None = None
    warnings: list[str] = Field(default_factory=list)


class UpperLimitResponse(Computed):
    poi: str
    level: float
    observed: Number | None = Field(description="null when CLs does not cross the level inside the "
                                    "scan (see warnings).")
    expected: list[Number | None] = Field(description="At expected_sigmas (−2σ..+2σ); null outside the scan.")
    expected_sigmas: list[int]
    scan: list[float]
    cls: list[Number]
    cls_expected: list[list[Number]]
    test_stat: LimitTestStat
    calctype: CalcType
    optimizer: Optimizer
    ntoys: int | None = None
    seed: int | None = None
    warnings: list[str]
