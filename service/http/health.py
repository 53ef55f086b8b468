"""Health and service description: /livez, /readyz, /v1/info."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from labcrunch_service import __version__, backends
from labcrunch_service.errors import NotReady
from labcrunch_service.http.deps import SettingsDep
from labcrunch_service.http.problems import Problem, error_response, problem_responses
from labcrunch_service.jobs.schemas import JobsInfo
from labcrunch_service.settings import Limits

router = APIRouter(tags=["health"])


class Live(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]


class ComputeInfo(BaseModel):
    max_concurrent_jobs: int
    max_queued_jobs: int
    in_flight: int = Field(description="Jobs running or queued now.")


class Info(BaseModel):
    """What /v1/info answers: the service, its backends and every limit."""

    service: Literal["labcrunch"]
    version: str
    ready: bool = Field(description="Start-up warm-up is done.")
    warmup_errors: dict[str, str] = Field(description="Domains whose warm-up failed, with the error.")
    backends: dict[str, dict[str, Any]] = Field(
        description="jax and tensorflow (availability, version, devices) and library versions.")
    compute: ComputeInfo
    auth: Literal["api-key", "none"]
    limits: Limits
    jobs: JobsInfo


@router.get("/livez", summary="The process is up", response_model=Live)
async def livez() -> Live:
    return Live(status="ok")


@router.get(
    "/readyz",
    summary="Start-up warm-up is done and requests will be served",
    response_model=Ready,
    responses={503: {"model": Problem, "description": "Still warming up"}},
)
async def readyz(request: Request) -> Any:
    if not request.app.state.ready.is_set():
        return error_response(NotReady("Start-up warm-up is still running.", headers={"Retry-After": "1"}))
    return Ready(status="ready")


info_router = APIRouter(prefix="/v1", tags=["info"])


@info_router.get("/info", summary="Service version, backends with devices, and every limit",
                 response_model=Info, responses=problem_responses(401, 500))
async def info(request: Request, settings: SettingsDep) -> Info:
    runner = request.app.state.runner
    return Info(
        service="labcrunch",
        version=__version__,
        ready=request.app.state.ready.is_set(),
        warmup_errors=request.app.state.warmup_errors,
        backends=backends.describe(),
        compute=ComputeInfo(max_concurrent_jobs=settings.max_concurrent_jobs,
                            max_queued_jobs=settings.max_queued_jobs, in_flight=runner.in_flight),
        auth="api-key" if settings.api_keys else "none",
        limits=settings.limits,
        jobs=JobsInfo(max_running_jobs=settings.max_running_jobs,
                      max_pending_jobs_per_owner=settings.max_pending_jobs_per_owner,
                      result_ttl_seconds=settings.job_result_ttl,
                      limits_in_place_of={"max_wall_seconds": "max_job_seconds"}),
    )
