"""HTTP routes for /v1/minimize: validate, call the domain function through the runner, encode."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from labcrunch_service import backends, encoding
from labcrunch_service.http.deps import LimitsDep, RunnerDep
from labcrunch_service.http.problems import problem_responses
from labcrunch_service.minimize import optimizers
from labcrunch_service.minimize.sweep import Sweep, minimize_expression
from labcrunch_service.settings import Settings

router = APIRouter(prefix="/v1/minimize", tags=["minimize"])

NonFinite = Literal["NaN", "Infinity", "-Infinity"]
Number = float | NonFinite  # how labcrunch writes non-finite numbers in JSON
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
LearningRate = Annotated[float, Field(gt=0, allow_inf_nan=False)]
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

    expression: str = Field(description="The function to minimise, in the language of "
                            "/v1/gradient (limits.max_text_length, max_ast_nodes, ...).",
                            examples=["x**2"])
    start: dict[str, FiniteFloat] = Field(description="The start point: a number for every "
                                          "free variable of the expression.")
    optimizer: OptimizerName = Field("sgd", description="The optimiser:\n" + _optimizer_table())
    learning_rate: LearningRate | Annotated[list[LearningRate], Field(min_length=1)] | None = Field(
        None, description="One rate, or a list: one run per rate, computed together "
        "(limits.max_learning_rates). Omitted: the optimiser's default; lbfgs takes none.")
    options: dict[str, float | bool] = Field(
        default_factory=dict, description="The optimiser's hyper-parameters (see `optimizer`; "
        "`GET /v1/minimize/optimizers` lists them with defaults and ranges).")
    steps: int = Field(100, ge=0, description="Steps per run (limits.max_steps).")
    tolerance: FiniteFloat | None = Field(None, ge=0, description="Stop a run once the gradient "
                                          "norm (projected, with `bounds`) is at most this "
                                          "(`converged`).")
    history_every: int = Field(1, ge=1, description="Record every n-th step (the start and the "
                               "last step are always recorded; limits.max_history_entries, "
                               "max_history_values).")
    bounds: dict[str, tuple[FiniteFloat | None, FiniteFloat | None]] | None = Field(
        None, description="Per variable `[lower, upper]` (null: open); steps are projected "
        "onto the box.")
    landscape: int | None = Field(None, ge=2, description="Also evaluate the expression on a "
                                  "grid of this many points per axis spanning the runs' paths, "
                                  "for pictures (one or two variables; limits.max_points).")
    dtype: Literal["float32", "float64"] = "float64"
    backend: Literal["jax", "tensorflow"] = Field("jax", description="jax (optax; all rates in "
                                                  "one compiled program) or tensorflow "
                                                  "(tf.keras.optimizers).")


class History(BaseModel):
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
    history: History


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


def _payload(sweep: Sweep) -> dict[str, Any]:
    def columns(matrix: Any) -> dict[str, Any]:
        return {name: matrix[..., i] for i, name in enumerate(sweep.variables)}

    runs = [{
        "learning_rate": run.learning_rate, "x": columns(run.x), "value": run.value,
        "grad_norm": run.grad_norm, "steps_taken": run.steps_taken, "converged": run.converged,
        "diverged": run.diverged,
        "history": {"step": run.history_step, "x": columns(run.history_x),
                    "value": run.history_value, "grad_norm": run.history_grad_norm},
    } for run in sweep.runs]
    landscape = None if sweep.landscape is None else {
        "x": dict(zip(sweep.variables, sweep.landscape.axes, strict=True)),
        "value": sweep.landscape.value}
    return {"variables": list(sweep.variables), "optimizer": sweep.optimizer,
            "options": sweep.hyper_parameters, "runs": runs, "landscape": landscape}


@router.post(
    "",
    summary="Minimise an expression: one optimiser, one or several learning rates, full history",
    description=(
        "Runs `optimizer` from `start` for `steps` steps, once per learning rate, and returns "
        "each run's path from the start point (step 0). A run stops early when the gradient "
        "norm reaches `tolerance` (`converged`) or at the first non-finite position, value or "
        "gradient (`diverged`; still a 200). On jax all rates run in one compiled program."),
    response_model=MinimizeResponse,
    responses=problem_responses(401, 413, 422, 429, 500, 503),
)
async def minimize_route(body: MinimizeRequest, runner: RunnerDep, limits: LimitsDep) -> Response:
    request = body.model_dump(exclude={"expression", "backend"})
    timed = await runner.run(minimize_expression, body.expression, backend=body.backend,
                             limits=limits, **request)
    payload = _payload(timed.result) | {
        "backend": body.backend, "dtype": body.dtype, "device": backends.device_for(body.backend),
        "elapsed_ms": timed.elapsed_ms}
    return Response(encoding.dumps(encoding.jsonable(payload)), media_type="application/json")


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


@router.get("/optimizers", summary="The optimisers, their options, defaults and ranges",
            response_model=list[OptimizerInfo], responses=problem_responses(401, 500))
async def optimizers_route() -> list[OptimizerInfo]:
    def finite(v: float) -> float | None:
        return v if math.isfinite(v) else None

    return [OptimizerInfo(
        name=o.name, summary=o.summary, default_learning_rate=o.default_learning_rate,
        backends=list(o.backends),
        options={k: HyperParameterInfo(default=p.default, description=p.doc, minimum=finite(p.low),
                                       maximum=finite(p.high), exclusive_minimum=p.low_open,
                                       exclusive_maximum=p.high_open)
                 for k, p in o.hyper_parameters.items()},
    ) for o in optimizers.OPTIMIZERS.values()]


def warmup(settings: Settings) -> None:
    """Compile the seed's sweep (SGD on x**2 at three rates) so the first request is quick."""
    minimize_expression("x**2", backend="jax", limits=settings.limits, start={"x": 1.0},
                        optimizer="sgd", learning_rate=[0.1, 0.99, 0.001], options={}, steps=50,
                        tolerance=None, history_every=1, bounds=None, dtype="float64")
