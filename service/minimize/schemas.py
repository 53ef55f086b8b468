"""Request and response models of /v1/minimize (pydantic; the OpenAPI document is made from them)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from labcrunch_service.minimize import optimizers
from labcrunch_service.schemas import (
    Boolean,
    FiniteFloat,
    Float,
    Integer,
    Number,
    UnionError,
    integer,
)

LearningRate = Annotated[FiniteFloat, Field(gt=0)]
LearningRates = Annotated[
    LearningRate | Annotated[list[LearningRate], Field(min_length=1)],
    UnionError("learning_rate_type", "Input should be a number > 0 or a non-empty list of them")]
Option = Annotated[Float | Boolean, UnionError("option_type", "Input should be a number or true/false")]
OptimizerName = Literal[tuple(optimizers.OPTIMIZERS)]  # type: ignore[valid-type]


def _optimizer_table() -> str:
    lines = []
    for o in optimizers.OPTIMIZERS.values():
        hp = ", ".join(f"`{k}`={v.default}" for k, v in o.hyper_parameters.items()) or "none"
        rate = f"default learning rate {o.default_learning_rate}" if o.default_learning_rate else \
            "no learning rate"
        only = "" if len(o.backends) > 1 else f" ({o.backends[0]} only)"
        lines.append(f"- `{o.name}`{only}: {o.summary}; {rate}; options: {hp}")
    return "\n".join(lines)


class MinimizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"expression": "x**2", "start": {"x": 1.0}, "optimizer": "sgd",
         "learning_rate": [0.1, 0.99, 0.001], "steps": 50, "backend": "jax"},
        {"expression": "(1 - x)**2 + 100 * (y - x**2)**2", "start": {"x": -1.2, "y": 1.0},
         "optimizer": "lbfgs", "steps": 200, "tolerance": 1e-8},
    ]})

    expression: str = Field(description="The function to minimize, in the language of "
                            "/v1/gradient (limits.max_text_length, max_ast_nodes, ...).",
                            examples=["x**2"])
    start: dict[str, FiniteFloat] = Field(description="The start point: a number for every "
                                          "free variable of the expression.")
    optimizer: OptimizerName = Field("sgd", description="The optimizer:\n" + _optimizer_table())
    learning_rate: LearningRates | None = Field(
        None, description="One rate, or a list: one run per rate, computed together "
        "(limits.max_learning_rates). Omitted: the optimizer's default; lbfgs takes none.")
    options: dict[str, Option] = Field(
        default_factory=dict, description="The optimizer's hyper-parameters (see `optimizer`; "
        "`GET /v1/minimize/optimizers` lists them with defaults and ranges).")
    steps: Integer = Field(100, ge=0, description="Steps per run (limits.max_steps).")
    tolerance: FiniteFloat | None = Field(None, ge=0, description="Stop a run once the gradient "
                                          "norm (projected, with `bounds`) is at most this "
                                          "(`converged`).")
    history_every: Integer = Field(1, ge=1, description="Record every n-th step (the start and the "
                               "last step are always recorded; limits.max_history_entries, "
                               "max_history_values).")
    bounds: dict[str, tuple[FiniteFloat | None, FiniteFloat | None]] | None = Field(
        None, description="Per variable `[lower, upper]` (null: open); steps are projected "
        "onto the box.")
    landscape: integer(ge=2) | None = Field(None, description="Also evaluate the expression on a "
                                  "grid of this many points per axis spanning the runs' paths, "
                                  "for pictures (one or two variables; limits.max_points).")
    dtype: Literal["float32", "float64"] = "float64"
    backend: Literal["jax", "tensorflow"] = Field("jax", description="jax (optax; all rates in "
                                                  "one compiled program) or tensorflow "
                                                  "(tf.keras.optimizers).")


class RunHistory(BaseModel):
    step: list[int] = Field(description="The step of each entry (0: the start point).")
    x: dict[str, list[Number]] = Field(description="Each variable's value at each entry.")
    value: list[Number]
    grad_norm: list[Number] = Field(description="Euclidean norm of the gradient (with `bounds`: "
                                    "of the projected gradient, without the components that "
                                    "push out of the box at an active bound).")


class RunResult(BaseModel):
    learning_rate: float | None
    x: dict[str, Number] = Field(description="The last position.")
    value: Number
    grad_norm: Number
    steps_taken: int
    converged: bool = Field(description="The gradient norm reached `tolerance`.")
    diverged: bool = Field(description="A position, value or gradient became non-finite; the "
                           "run stopped there (its last history entry).")
    history: RunHistory


class LandscapeResult(BaseModel):
    x: dict[str, list[float]] = Field(description="Each variable's grid axis.")
    value: list[Number] | list[list[Number]] = Field(
        description="The function on the grid: one list for one variable; for two, one row "
        "per value of the second variable (as matplotlib's contour expects).")


class MinimizeResponse(BaseModel):
    variables: list[str]
    optimizer: str
    options: dict[str, float | bool] = Field(description="The hyper-parameters used, defaults "
                                             "included.")
    runs: list[RunResult]
    landscape: LandscapeResult | None = None
    backend: str
    dtype: str
    device: str
    elapsed_ms: float


class HyperParameterInfo(BaseModel):
    default: float | bool
    description: str
    minimum: float | None
    maximum: float | None
    exclusive_minimum: bool
    exclusive_maximum: bool


class OptimizerInfo(BaseModel):
    name: str
    summary: str
    default_learning_rate: float | None
    backends: list[str]
    options: dict[str, HyperParameterInfo]
