"""Request and response models of /v1/fit/line (pydantic; the OpenAPI document is made from them).

The options travel in a JSON body or, beside a ``.npy`` body, as query parameters
(:data:`FitQuery`: the same fields, flattened). Earlier spellings are still accepted: ``gd`` for
``gradient_descent``, ``init`` for ``initial`` and ``init_m``/``init_q`` for
``initial_m``/``initial_q``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from labcrunch_service import encoding
from labcrunch_service.fit.line import DescentOptions
from labcrunch_service.schemas import Boolean, FiniteFloat, Integer, Number, binary_body_options

_DEFAULT = DescentOptions()  # the domain's defaults are the API's


class LineStart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    m: FiniteFloat = Field(_DEFAULT.initial_m, description="Initial slope.")
    q: FiniteFloat = Field(_DEFAULT.initial_q, description="Initial intercept.")


class GradientDescentOptions(BaseModel):
    """Minibatch gradient descent (``method: gradient_descent``)."""

    model_config = ConfigDict(extra="forbid")
    optimizer: Literal["sgd", "adam"] = Field(_DEFAULT.optimizer, description="optax / Keras optimizer.")
    learning_rate: FiniteFloat = Field(_DEFAULT.learning_rate, gt=0,
                                       description="Step size (in standardized x when `standardize`).")
    epochs: Integer = Field(_DEFAULT.epochs, ge=1, description="Passes over the data (limits.max_fit_epochs).")
    batch_size: Integer = Field(_DEFAULT.batch_size, ge=1,
                            description="Points per minibatch (the last may be shorter).")
    initial: LineStart = Field(default_factory=LineStart,
                               validation_alias=AliasChoices("initial", "init"),
                               description="Start point, in the units of x (`init` is accepted too).")
    shuffle: Boolean = Field(_DEFAULT.shuffle, description="A fresh numpy permutation of the points "
                          "each epoch (numpy default_rng(seed)).")
    seed: Integer = Field(_DEFAULT.seed, ge=0, le=2**63 - 1, description="Seed of the permutations: the "
                      "same on both backends, so their loss histories agree.")
    standardize: Boolean = Field(_DEFAULT.standardize, description="Fit in x' = (x - mean)/std with "
                              "weights of mean 1 and map m, q back, so one learning rate suits any data.")


class FitOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: Literal["least_squares", "gradient_descent"] = Field(
        "least_squares", description="Closed-form weighted least squares (numpy, float64), or "
        "minibatch gradient descent.")
    backend: Literal["jax", "tensorflow"] = Field(
        "jax", description="Where gradient descent runs (tensorflow: a Keras model and `fit`).")
    gradient_descent: GradientDescentOptions = Field(
        default_factory=GradientDescentOptions,
        validation_alias=AliasChoices("gradient_descent", "gd"),
        description="Options of `method: gradient_descent` (`gd` is accepted too).")

    def descent(self) -> DescentOptions:
        options = self.gradient_descent
        return DescentOptions(optimizer=options.optimizer, learning_rate=options.learning_rate,
                              epochs=options.epochs, batch_size=options.batch_size,
                              initial_m=options.initial.m, initial_q=options.initial.q,
                              shuffle=options.shuffle, seed=options.seed,
                              standardize=options.standardize)


class FitLineRequest(FitOptions):
    """A JSON fit request. Non-finite numbers may be written "NaN"/"Infinity" (and are refused)."""

    x: list[Number] = Field(description="Abscissae (limits.max_fit_points).")
    y: list[Number] = Field(description="Ordinates, as many as x.")
    sigma: list[Number] | None = Field(None, description="Per-point uncertainties σ > 0, as many "
                                      "as x: a weighted fit with absolute σ.")


def _flat_query_fields() -> dict[str, Any]:
    """FitOptions flattened for query strings: the gradient_descent fields at top level, initial
    as initial_m/initial_q (init_m/init_q accepted too)."""
    fields: dict[str, Any] = {name: (f.annotation, f) for name, f in FitOptions.model_fields.items()
                              if name != "gradient_descent"}
    fields |= {name: (f.annotation, f) for name, f in GradientDescentOptions.model_fields.items()
               if name != "initial"}
    for name, f in LineStart.model_fields.items():
        fields[f"initial_{name}"] = (FiniteFloat, Field(
            f.default, description=f.description,
            validation_alias=AliasChoices(f"initial_{name}", f"init_{name}")))
    return fields


FitQuery = binary_body_options(
    "FitQuery", _flat_query_fields(), encoding.NPY_MEDIA_TYPE,
    doc="Fit options as query parameters: only with an application/x-npy body.")


def options_from_query(query: BaseModel) -> FitOptions:
    flat = query.model_dump()
    descent = {k: v for k, v in flat.items() if k in GradientDescentOptions.model_fields}
    descent["initial"] = {"m": flat["initial_m"], "q": flat["initial_q"]}
    return FitOptions(method=flat["method"], backend=flat["backend"], gradient_descent=descent)


class Uncertainty(BaseModel):
    m: Number
    q: Number


class FitHistory(BaseModel):
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
    history: FitHistory | None = None


def _inline_refs(schema: Any, defs: dict[str, Any]) -> Any:
    """Replace ``$ref``s into ``$defs`` by the definitions, so the schema stands alone in OpenAPI."""
    if isinstance(schema, dict):
        if "$ref" in schema:  # the definition, with the field's own keys (its description)
            definition = _inline_refs(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
            return definition | {k: _inline_refs(v, defs) for k, v in schema.items() if k != "$ref"}
        return {k: _inline_refs(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline_refs(v, defs) for v in schema]
    return schema


# The body is read by hand (JSON or .npy), so the OpenAPI request body is declared here.
_JSON_SCHEMA = FitLineRequest.model_json_schema()
REQUEST_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": _inline_refs(_JSON_SCHEMA, _JSON_SCHEMA.get("$defs", {}))},
        encoding.NPY_MEDIA_TYPE: {
            "schema": {"type": "string", "format": "binary",
                       "description": "A .npy float array of shape (N, 2) [x, y] or (N, 3) "
                                      "[x, y, sigma]; options as query parameters."}},
    },
}
