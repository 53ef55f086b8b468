"""HTTP routes for /v1/fit/line: validate, call the domain function through the runner, encode.

One route, two body formats: JSON (points and options in the body), or a ``.npy`` array of
shape (N, 2) [x, y] or (N, 3) [x, y, sigma] with the options as query parameters — the
practical way to send 10^6 points and more::

    python -c "import numpy as np; x = np.arange(1e6); np.save('points.npy', np.c_[x, 2.5 * x + 1.2])"
    curl -X POST 'http://127.0.0.1:8000/v1/fit/line?method=least_squares' \\
         -H 'Content-Type: application/x-npy' --data-binary @points.npy
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, create_model
from starlette.concurrency import run_in_threadpool

from labcrunch_service import backends, encoding
from labcrunch_service.errors import InvalidInput
from labcrunch_service.fit import DescentOptions, LineFit, fit_line
from labcrunch_service.http.bodies import json_or_binary
from labcrunch_service.http.deps import LimitsDep, RunnerDep
from labcrunch_service.http.problems import problem_responses
from labcrunch_service.settings import Limits, Settings

router = APIRouter(prefix="/v1/fit/line", tags=["fit"])

NonFinite = Literal["NaN", "Infinity", "-Infinity"]
Number = float | NonFinite  # how labcrunch writes non-finite numbers in JSON
_DEFAULT = DescentOptions()  # the domain's defaults are the API's


class LineStart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    m: float = Field(_DEFAULT.init_m, allow_inf_nan=False, description="Initial slope.")
    q: float = Field(_DEFAULT.init_q, allow_inf_nan=False, description="Initial intercept.")


class GradientDescentOptions(BaseModel):
    """Minibatch gradient descent (``method: gradient_descent``)."""

    model_config = ConfigDict(extra="forbid")
    optimizer: Literal["sgd", "adam"] = Field(_DEFAULT.optimizer, description="optax / Keras optimizer.")
    learning_rate: float = Field(_DEFAULT.learning_rate, gt=0, allow_inf_nan=False,
                                 description="Step size (in standardized x when `standardize`).")
    epochs: int = Field(_DEFAULT.epochs, ge=1, description="Passes over the data (limits.max_fit_epochs).")
    batch_size: int = Field(_DEFAULT.batch_size, ge=1,
                            description="Points per minibatch (the last may be shorter).")
    init: LineStart = Field(default_factory=LineStart, description="Start point, in the units of x.")
    shuffle: bool = Field(_DEFAULT.shuffle, description="A fresh numpy permutation of the points "
                          "each epoch (numpy default_rng(seed)).")
    seed: int = Field(_DEFAULT.seed, ge=0, le=2**63 - 1, description="Seed of the permutations: the "
                      "same on both backends, so their loss histories agree.")
    standardize: bool = Field(_DEFAULT.standardize, description="Fit in x' = (x - mean)/std with "
                              "weights of mean 1 and map m, q back, so one learning rate suits any data.")


class FitOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: Literal["least_squares", "gradient_descent"] = Field(
        "least_squares", description="Closed-form weighted least squares (numpy, float64), or "
        "minibatch gradient descent.")
    backend: Literal["jax", "tensorflow"] = Field(
        "jax", description="Where gradient descent runs (tensorflow: a Keras model and `fit`).")
    gd: GradientDescentOptions = Field(default_factory=GradientDescentOptions)

    def descent(self) -> DescentOptions:
        gd = self.gd
        return DescentOptions(optimizer=gd.optimizer, learning_rate=gd.learning_rate,
                              epochs=gd.epochs, batch_size=gd.batch_size, init_m=gd.init.m,
                              init_q=gd.init.q, shuffle=gd.shuffle, seed=gd.seed,
                              standardize=gd.standardize)


class FitLineRequest(FitOptions):
    """A JSON fit request. Non-finite numbers may be written "NaN"/"Infinity" (and are refused)."""

    x: list[float] = Field(description="Abscissae (limits.max_fit_points).")
    y: list[float] = Field(description="Ordinates, as many as x.")
    sigma: list[float] | None = Field(None, description="Per-point uncertainties σ > 0, as many "
                                      "as x: a weighted fit with absolute σ.")


def _flat_query_fields() -> dict[str, Any]:
    """FitOptions flattened for query strings: gd fields at top level, init as init_m/init_q."""
    fields: dict[str, Any] = {
        name: (f.annotation, f) for name, f in FitOptions.model_fields.items() if name != "gd"}
    fields |= {name: (f.annotation, f) for name, f in GradientDescentOptions.model_fields.items()
               if name != "init"}
    fields |= {f"init_{name}": (f.annotation, f) for name, f in LineStart.model_fields.items()}
    return fields


FitQuery = create_model(
    "FitQuery", __config__=ConfigDict(extra="forbid"),
    __doc__="Fit options as query parameters: only with an application/x-npy body.",
    **_flat_query_fields(),
)


def _options_from_query(query: BaseModel) -> FitOptions:
    flat = query.model_dump()
    gd = {k: v for k, v in flat.items() if k in GradientDescentOptions.model_fields}
    gd["init"] = {"m": flat["init_m"], "q": flat["init_q"]}
    return FitOptions(method=flat["method"], backend=flat["backend"], gd=gd)


class Uncertainty(BaseModel):
    m: Number
    q: Number


class History(BaseModel):
    loss: list[Number] = Field(description="Per epoch: the minibatch losses averaged (as Keras).")
    m: list[Number] = Field(description="Slope at the end of each epoch.")
    q: list[Number] = Field(description="Intercept at the end of each epoch.")


class FitLineResponse(BaseModel):
    m: Number
    q: Number
    uncertainty: Uncertainty = Field(description="Square roots of the covariance diagonal.")
    covariance: list[list[Number]] = Field(description="Covariance of (m, q).")
    covariance_scaled: bool = Field(description="True when no sigma was given: (AᵀA)⁻¹ scaled by "
                                    "chi2/ndf (numpy.polyfit cov=True); false: (AᵀWA)⁻¹, W = 1/σ².")
    correlation: list[list[Number]]
    chi2: Number = Field(description="Σ wᵢ rᵢ² at (m, q), wᵢ = 1/σᵢ² (or 1).")
    ndf: int = Field(description="N - 2.")
    method: str
    backend: str = Field(description="numpy (least squares), jax or tensorflow.")
    device: str
    elapsed_ms: float
    diverged: bool = Field(description="Gradient descent ended on non-finite values.")
    history: History | None = None


def _inline_refs(schema: Any, defs: dict[str, Any]) -> Any:
    """Replace ``$ref``s into ``$defs`` by the definitions, so the schema stands alone in OpenAPI."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _inline_refs(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
        return {k: _inline_refs(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline_refs(v, defs) for v in schema]
    return schema


# The body is read by hand (JSON or .npy), so the OpenAPI request body is declared here.
_JSON_SCHEMA = FitLineRequest.model_json_schema()
_REQUEST_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": _inline_refs(_JSON_SCHEMA, _JSON_SCHEMA.get("$defs", {}))},
        encoding.NPY_MEDIA_TYPE: {
            "schema": {"type": "string", "format": "binary",
                       "description": "A .npy float array of shape (N, 2) [x, y] or (N, 3) "
                                      "[x, y, sigma]; options as query parameters."}},
    },
}


def _fit_payload(fit: LineFit) -> dict[str, Any]:
    return {"m": fit.m, "q": fit.q, "uncertainty": fit.uncertainty, "covariance": fit.covariance,
            "covariance_scaled": fit.covariance_scaled, "correlation": fit.correlation,
            "chi2": fit.chi2, "ndf": fit.ndf, "method": fit.method, "backend": fit.backend,
            "diverged": fit.diverged, "history": fit.history}


def _points_from_npy(body: bytes, limits: Limits) -> tuple[Any, Any, Any]:
    table = encoding.read_npy(body, max_elements=3 * limits.max_fit_points, limit="max_fit_points",
                              max_rows=limits.max_fit_points)
    if table.ndim != 2 or table.shape[1] not in (2, 3):
        raise InvalidInput(
            f"The .npy body has shape {table.shape}; expected (N, 2) [x, y] or (N, 3) [x, y, sigma].",
            errors=[{"loc": ["body"], "msg": f"shape {table.shape}", "type": "shape"}])
    return table[:, 0], table[:, 1], table[:, 2] if table.shape[1] == 3 else None


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
    openapi_extra={"requestBody": _REQUEST_BODY},
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
        x, y, sigma = await run_in_threadpool(_points_from_npy, content, limits)
        options: FitOptions = _options_from_query(query)
    else:
        x, y, sigma, options = content.x, content.y, content.sigma, content
    timed = await runner.run(fit_line, x, y, sigma, method=options.method, backend=options.backend,
                             descent=options.descent(), limits=limits)
    payload = _fit_payload(timed.result)
    device = "cpu" if timed.result.backend == "numpy" else backends.device_for(timed.result.backend)
    payload |= {"device": device, "elapsed_ms": timed.elapsed_ms}
    return Response(encoding.dumps(encoding.jsonable(payload)), media_type="application/json")


def warmup(settings: Settings) -> None:
    """Compile the JAX epoch (SGD) and Hessian for the seed notebook's shape: 1,000 points, batches
    of 100 (other sizes compile on first use, then share bucketed shapes)."""
    x = [float(i) for i in range(1000)]
    fit_line(x, [2.5 * v + 1.2 for v in x], method="gradient_descent", backend="jax",
             descent=DescentOptions(epochs=1), limits=settings.limits)
