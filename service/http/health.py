"""Health and service description: /livez, /readyz, /v1/info."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from labcrunch_service import __version__
from labcrunch_service.compute import cluster
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


class WorkerInfo(BaseModel):
    """One compute worker process."""

    id: str = Field(description="cpu-0, cpu-1, gpu-0, ...")
    node: str = Field(description="The machine it runs on (host name).")
    node_id: str = Field(description="Ray's id of that node.")
    device: str = Field(description="Where its JAX computes: cpu, gpu:0 (NVIDIA H100 ...).")
    state: Literal["warming", "idle", "busy", "restarting", "stopped"]
    task: str | None = Field(description="The task it runs now (module:function), when busy.")
    owner: str | None = Field(description="Whose job it runs now, when busy.")
    running_seconds: float | None
    jobs_done: int
    restarts: int = Field(description="Times its process was ended (wall time, memory, cancel) "
                                      "or died, and replaced.")
    rss_bytes: int | None = Field(description="Resident memory of its process.")
    memory_budget_bytes: int | None = Field(description="Its memory limit unless "
                                                        "worker_memory_bytes is set.")


class SharedMemoryInfo(BaseModel):
    """The blocks of shared memory that carry large arrays to and from this machine's workers."""

    budget_bytes: int = Field(description="At most this many bytes of blocks (shared_memory_bytes; "
                                          "0: arrays go through Ray's object store).")
    bytes: int = Field(description="Bytes of blocks now, lent or free.")
    blocks: int
    free_blocks: int
    jobs: int = Field(description="Jobs that have had a block since the start.")


class ComputeInfo(BaseModel):
    max_concurrent_jobs: int = Field(description="Jobs that run at once: one per worker.")
    max_queued_jobs: int = Field(description="Jobs that may wait, all owners together.")
    max_queued_per_owner: int
    max_running_per_owner: int | None = Field(description="None: up to every worker.")
    worker_memory_bytes: int | None = Field(description="Memory limit of a worker (None: each "
                                                        "worker's share of its machine).")
    in_flight: int = Field(description="Jobs running or queued now.")
    queued: int = Field(description="Jobs waiting for a worker now.")
    cluster: str | None = Field(description="'local' (a Ray started by the server) or the address "
                                            "of the Ray cluster it joined.")
    workers: list[WorkerInfo]
    shared_memory: SharedMemoryInfo


class Info(BaseModel):
    """What /v1/info answers: the service, its backends and every limit."""

    service: Literal["labcrunch"]
    version: str
    ready: bool = Field(description="Start-up warm-up is done.")
    warmup_errors: dict[str, str] = Field(description="Domains whose warm-up failed, with the error.")
    backends: dict[str, dict[str, Any]] = Field(
        description="jax and tensorflow (availability, version, devices) and library versions, "
                    "as the compute workers see them (empty until one has started).")
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
    snapshot = request.app.state.runner.scheduler.snapshot()
    queued, running = sum(snapshot["queued"].values()), sum(snapshot["running"].values())
    return Info(
        service="labcrunch",
        version=__version__,
        ready=request.app.state.ready.is_set(),
        warmup_errors=request.app.state.warmup_errors | snapshot["warmup_errors"],
        backends=snapshot["backends"],  # as a worker sees them: this process computes nothing
        compute=ComputeInfo(
            max_concurrent_jobs=len(snapshot["workers"]), max_queued_jobs=settings.max_queued_jobs,
            max_queued_per_owner=settings.max_queued_per_owner,
            max_running_per_owner=settings.max_running_per_owner,
            worker_memory_bytes=settings.worker_memory_bytes, in_flight=queued + running,
            queued=queued, cluster=cluster.address(),
            workers=[WorkerInfo.model_validate(worker) for worker in snapshot["workers"]],
            shared_memory=SharedMemoryInfo.model_validate(snapshot["shared_memory"])),
        auth="api-key" if settings.api_keys else "none",
        limits=settings.limits,
        jobs=JobsInfo(max_running_jobs=settings.max_running_jobs,
                      max_pending_jobs_per_owner=settings.max_pending_jobs_per_owner,
                      result_ttl_seconds=settings.job_result_ttl,
                      limits_in_place_of={"max_wall_seconds": "max_job_seconds"}),
    )
