"""Health and service description: /livez, /readyz, /v1/info."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from labcrunch_service import __version__, backends
from labcrunch_service.http.deps import SettingsDep
from labcrunch_service.http.problems import Problem, problem_response, problem_responses

router = APIRouter(tags=["health"])


@router.get("/livez", summary="The process is up")
async def livez() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Start-up warm-up is done and requests will be served",
    responses={503: {"model": Problem, "description": "Still warming up"}},
)
async def readyz(request: Request) -> Any:
    if not request.app.state.ready.is_set():
        return problem_response(503, "Not ready", "Start-up warm-up is still running.",
                                slug="not-ready", headers={"Retry-After": "1"})
    return {"status": "ready"}


info_router = APIRouter(prefix="/v1", tags=["info"])


@info_router.get("/info", summary="Service version, backends with devices, and every limit",
                 responses=problem_responses(401, 500))
async def info(request: Request, settings: SettingsDep) -> JSONResponse:
    runner = request.app.state.runner
    return JSONResponse({
        "service": "labcrunch",
        "version": __version__,
        "ready": request.app.state.ready.is_set(),
        "warmup_errors": request.app.state.warmup_errors,
        "backends": backends.describe(),
        "compute": {
            "max_concurrent_jobs": settings.max_concurrent_jobs,
            "max_queued_jobs": settings.max_queued_jobs,
            "in_flight": runner.in_flight,
        },
        "auth": "api-key" if settings.api_keys else "none",
        "limits": settings.limits.model_dump(),
    })
