"""The /v1/gradient request and response models (pydantic)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from labcrunch_service import encoding
from labcrunch_service.schemas import Integer, Number, UnionError, binary_body_options


class GradientOptions(BaseModel):
    """What to differentiate and how; with an .npz body these are query parameters."""

    model_config = ConfigDict(extra="forbid")
    expression: str | None = Field(None, description="An expression, e.g. `sin(x) * y**2` "
                                   "(limits.max_text_length, max_ast_nodes, max_nesting_depth).",
                                   examples=["(x - 1)**2"])
    program: str | None = Field(None, description="Python-like source with one or more `def`; "
                                "differentiates `function`. Runs point by point.")
    function: str | None = Field(None, description="The def in `program` to differentiate; its "
                                 "parameters are the variables, in order.")
    order: Integer = Field(1, ge=1, le=2, description="1: value and gradient; 2: also the Hessian.")
    backend: Literal["jax", "tensorflow"] = Field("jax", description="jax (jit/vmap/grad) or "
                                                  "tensorflow (GradientTape).")
    dtype: Literal["float32", "float64"] = Field("float64", description="Precision of the computation.")


GradientQuery = binary_body_options(
    "GradientQuery", {name: (f.annotation, f) for name, f in GradientOptions.model_fields.items()},
    encoding.NPZ_MEDIA_TYPE, doc="The options as query parameters, beside an .npz body.")


# The domain's rule (derivatives.compile_formula), for the OpenAPI document.
_EXPRESSION_OR_PROGRAM = [
    {"title": "expression", "required": ["expression"],
     "properties": {"expression": {"type": "string"}, "program": {"type": "null"},
                    "function": {"type": "null"}}},
    {"title": "program", "required": ["program", "function"],
     "properties": {"program": {"type": "string"}, "function": {"type": "string", "minLength": 1},
                    "expression": {"type": "null"}}},
]


class GradientRequest(GradientOptions):
    """A JSON gradient request: exactly one of `expression` or `program` + `function`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "oneOf": _EXPRESSION_OR_PROGRAM, "examples": [
        {"expression": "(x - 1)**2", "at": {"x": 3.0}},
        {"expression": "sin(x) * y**2", "at": {"x": [0.1, 0.2], "y": [1.0, 2.0]}, "order": 2,
         "backend": "tensorflow"},
        {"program": "def f(x):\n    if x > 0:\n        for i in range(2):\n            x += "
                    "jax.numpy.sqrt(x)\n        return x / 10.\n    else:\n        return "
                    "f(f(x ** 2)) + 1\n", "function": "f", "at": {"x": 3.4}},
    ]})
    at: dict[str, Annotated[Number | list[Number], UnionError(
        "number_or_list_type", "Input should be a number or a list of numbers (JSON numbers, or "
        "'NaN', 'Infinity', '-Infinity')")]] = Field(
        default_factory=dict, description="A value for each free variable: a number, or a list "
        "(equal-length lists are a batch of points; numbers broadcast over the batch). "
        "Non-finite inputs may be written \"NaN\", \"Infinity\", \"-Infinity\".")


class GradientResponse(BaseModel):
    variables: list[str] = Field(description="The free variables: sorted by name for an "
                                 "expression, the function's parameters for a program.")
    value: Number | list[Number]
    gradient: dict[str, Number | list[Number]] = Field(description="∂value/∂variable.")
    hessian: list[list[Number]] | list[list[list[Number]]] | None = Field(
        None, description="Order 2: rows and columns in `variables` order; a list of matrices "
        "for a batch.")
    backend: str
    dtype: str
    device: str
    elapsed_ms: float
