"""HTTP routes for /v1/minimize: validate, call the domain function through the runner, encode."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from fastapi.responses import Response

from labcrunch_service.compute import Task
from labcrunch_service.http.bodies import JsonBodyRoute
from labcrunch_service.http.deps import LimitsDep, RunnerDep
from labcrunch_service.http.problems import problem_responses
from labcrunch_service.http.responses import json_response
from labcrunch_service.minimize import optimizers
from labcrunch_service.minimize.schemas import (
    HyperParameterInfo,
    MinimizeRequest,
    MinimizeResponse,
    OptimizerInfo,
)

if TYPE_CHECKING:
    from labcrunch_service.minimize.sweep import Sweep

router = APIRouter(prefix="/v1/minimize", tags=["minimize"], route_class=JsonBodyRoute)
#: Run once in every compute process at start-up (settings.warmup): compiles the hot path.
WARMUP = Task("labcrunch_service.minimize.sweep:warmup")

MINIMIZE = Task("labcrunch_service.minimize.sweep:minimize_expression")


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
    summary="Minimize an expression: one optimizer, one or several learning rates, full history",
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
    timed = await runner.run(MINIMIZE, body.expression, backend=body.backend,
                             limits=limits, **request)
    payload = _payload(timed.result) | {
        "backend": body.backend, "dtype": body.dtype, "device": timed.device(body.backend),
        "elapsed_ms": timed.elapsed_ms}
    return json_response(payload)


@router.get("/optimizers", summary="The optimizers, their options, defaults and ranges",
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

