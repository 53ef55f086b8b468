"""HTTP routes for /v1/jobs: a job's document, result, events and cancellation, and a caller's list.

Jobs are made by sending any compute request with ``Prefer: respond-async``
(:mod:`labcrunch_service.jobs.middleware`). With API keys a job is visible only to its owner
(any other key gets 404); without keys everybody sees every job.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.exceptions import HTTPException

from labcrunch_service.errors import InvalidInput, NoResult
from labcrunch_service.http.deps import OwnerDep
from labcrunch_service.http.problems import problem_responses
from labcrunch_service.http.responses import acceptable, json_response
from labcrunch_service.jobs.manager import JobManager, answer_headers, is_problem
from labcrunch_service.jobs.schemas import JobDocument, JobPage
from labcrunch_service.jobs.store import JobStatus

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

EVENT_STREAM = "text/event-stream"
_ERRORS = problem_responses(401, 404, 500, 503)


async def job_manager(request: Request) -> JobManager:
    return request.app.state.jobs


async def viewer(request: Request, owner: OwnerDep) -> str | None:
    """Whose jobs the caller sees: their own with API keys, everybody's without (None)."""
    return owner if request.app.state.settings.api_keys else None


JobsDep = Annotated[JobManager, Depends(job_manager)]
ViewerDep = Annotated[str | None, Depends(viewer)]


def _document_answer(jobs: JobManager, document: JobDocument) -> Response:
    retry_after = jobs.retry_after(document)
    return json_response(document.model_dump(mode="json"),
                         headers={"Retry-After": retry_after} if retry_after else None)


def _cursor(text: str | None) -> tuple[float, str] | None:
    if text is None:
        return None
    created, _, job_id = text.partition(":")
    try:
        return float(created), job_id
    except ValueError:
        raise InvalidInput("The cursor is not one this server gave (a page's `next`).", errors=[
            {"loc": ["query", "cursor"], "msg": "not a cursor of this server", "type": "value_error"}],
        ) from None


@router.get("", summary="The caller's jobs, newest first", response_model=JobPage,
            responses=problem_responses(401, 422, 500, 503))
async def list_jobs(
    jobs: JobsDep,
    owner: ViewerDep,
    status: Annotated[list[JobStatus] | None, Query(description="Only jobs in these statuses.")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Jobs per page.")] = 50,
    cursor: Annotated[str | None, Query(description="Where the page starts: a page's `next`.")] = None,
) -> Response:
    records = await jobs.page(owner, status, limit + 1, _cursor(cursor))
    following = None
    if len(records) > limit:
        records, last = records[:limit], records[limit - 1]
        query = [("limit", limit), *(("status", s) for s in status or ()),
                 ("cursor", f"{last.created!r}:{last.id}")]
        following = f"{router.prefix}?{urlencode(query)}"
    page = JobPage(jobs=[jobs.document(r) for r in records], next=following)
    return json_response(page.model_dump(mode="json"))


@router.get("/{job_id}", summary="A job: status, progress, error, result link",
            response_model=JobDocument, responses=_ERRORS)
async def get_job(job_id: str, jobs: JobsDep, owner: ViewerDep) -> Response:
    """While the job is not finished the answer carries `Retry-After`, a polling hint."""
    return _document_answer(jobs, jobs.document(await jobs.visible(job_id, owner)))


_RESULT_RESPONSES = {
    200: {"description": "The answer of the synchronous request, with its media type (chosen by "
                         "the submit request's `Accept`) and headers.",
          "content": {"application/json": {"schema": {"type": "object"}},
                      **{media: {"schema": {"type": "string", "format": "binary"}} for media in (
                          "application/x-npz", "application/x-npy", "image/png")}}},
    **problem_responses(401, 404, 406, 409, 500, 503),
}


@router.get("/{job_id}/result", summary="A finished job's answer", response_class=Response,
            response_model=None, responses=_RESULT_RESPONSES)
async def job_result(job_id: str, request: Request, jobs: JobsDep, owner: ViewerDep) -> Response:
    """Exactly what the synchronous request would have answered: the body with its media type and
    headers when the job succeeded, its problem when it failed; 409 while it runs or when it was
    cancelled."""
    record = await jobs.visible(job_id, owner)
    if not record.is_finished:
        document = jobs.document(record)
        raise NoResult(f"Job {job_id} is {record.status}; its result is here once it has succeeded.",
                       headers={"Retry-After": jobs.retry_after(document) or "1"}, job_status=document.status)
    if record.status == "cancelled":
        raise NoResult(f"Job {job_id} was cancelled; it has no result.", job_status=record.status)
    answer, body = await jobs.answer(record)
    if not is_problem(answer) and not acceptable(request.headers.get("accept"), answer.media_type):
        raise HTTPException(406, f"This job's result is {answer.media_type}. A job's media type is "
                                 "chosen when it is submitted, by the submit request's Accept "
                                 "header; ask for it (or */*), or submit the request again.")
    return Response(body, status_code=answer.status_code, headers=answer_headers(answer),
                    media_type=answer.media_type)


@router.get("/{job_id}/events", summary="Server-Sent Events: progress and the final status",
            response_class=StreamingResponse, response_model=None,
            responses={200: {"description": "`event: status` with the job document at each change "
                                            "of status or queue position, `event: progress` with "
                                            "its progress; the stream ends after the final status.",
                             "content": {EVENT_STREAM: {"schema": {"type": "string"}}}},
                       **_ERRORS})
async def job_events(job_id: str, jobs: JobsDep, owner: ViewerDep) -> StreamingResponse:
    await jobs.visible(job_id, owner)
    return StreamingResponse(jobs.events(job_id), media_type=EVENT_STREAM,
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.delete("/{job_id}", summary="Cancel a job", response_model=JobDocument, responses=_ERRORS)
async def cancel_job(job_id: str, jobs: JobsDep, owner: ViewerDep) -> Response:
    """A queued job is cancelled at once, a running one's computation stopped; a finished job
    stays as it is (cancelling is idempotent). Answers the job document."""
    record = await jobs.cancel(await jobs.visible(job_id, owner))
    return _document_answer(jobs, jobs.document(record))
