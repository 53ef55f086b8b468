"""What /v1/jobs answers: the job document, a page of them, and what /v1/info says of jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from labcrunch_service.jobs.store import JobStatus


class JobProgress(BaseModel):
    """How far a running job has got, as its computation last reported."""

    done: float = Field(description="Units finished.")
    total: float | None = Field(description="Units in all (null when unknown).")
    unit: str = Field(description="What is counted: steps, epochs, points, iterations, ...")
    fraction: float | None = Field(description="done / total (null when unknown).")
    eta_seconds: float | None = Field(description="Seconds left at the pace so far (null when unknown).")


class JobDocument(BaseModel):
    """One job: a request sent with `Prefer: respond-async`, computed in the background."""

    id: str
    status: JobStatus = Field(description="queued, running, succeeded, failed or cancelled.")
    endpoint: str = Field(description="The request the job runs, e.g. 'POST /v1/pyhf/upper-limit'.")
    owner: str = Field(description="The name of the API key that submitted it (else the address).")
    created: datetime = Field(description="When it was submitted (RFC 3339).")
    started: datetime | None = Field(None, description="When it last started running.")
    finished: datetime | None = Field(None, description="When it succeeded, failed or was cancelled.")
    expires: datetime | None = Field(
        None, description="When the finished job and its result are deleted (LABCRUNCH_JOB_RESULT_TTL).")
    attempts: int = Field(0, description="Times it started running (a restart runs a running job again once).")
    queue_position: int | None = Field(None, description="While queued: 1 starts next.")
    progress: JobProgress | None = Field(None, description="While running (and where a cancelled "
                                         "or failed job had got): the computation's last report.")
    error: dict[str, Any] | None = Field(
        None, description="When failed: the RFC 9457 problem the synchronous request would have answered.")
    result: str | None = Field(None, description="When succeeded: where to GET the result.")


class JobPage(BaseModel):
    """The caller's jobs, newest first."""

    jobs: list[JobDocument]
    next: str | None = Field(description="The next page's URL (null on the last page).")


class JobsInfo(BaseModel):
    """How jobs run here (in /v1/info)."""

    max_running_jobs: int = Field(description="Jobs computing at once; others wait their turn.")
    max_pending_jobs_per_owner: int = Field(description="Queued or running jobs one owner may have.")
    result_ttl_seconds: float = Field(description="How long a finished job and its result are kept.")
    limits_in_place_of: dict[str, str] = Field(
        description="Limits of synchronous requests that jobs replace by their own: "
                    "{synchronous limit: the job's limit}.")
