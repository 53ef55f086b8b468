"""The job runner: requests sent with ``Prefer: respond-async`` computed in the background.

A job is its route handler run as a background asyncio task with a :class:`Submission` current
(:mod:`labcrunch_service.compute.job_context`). The handler validates and checks limits as it
always does; when it reaches ``Runner.run`` the job is stored as queued and the client gets 202,
the job waits for its turn (at most ``max_running_jobs`` run at once, handed round-robin between
owners) and computes under ``limits.max_job_seconds``. Whatever the handler answers — status,
headers, body, encoded for the submit request's ``Accept`` — is the job's stored answer: a 2xx
makes it succeeded, anything else failed with that problem as its error.

Every request is stored with its job (method, path, query, ``Content-Type``/``Accept``, body), so
after a restart a queued job is sent through the app again in-process; a job that was running
is queued once more (computations are pure), and failed if the server stops during that run too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Send

from labcrunch_service.compute import job_context
from labcrunch_service.errors import (
    Busy,
    JobInterrupted,
    LabcrunchError,
    LimitExceeded,
    NotFound,
    NotReady,
)
from labcrunch_service.http.auth import REPLAY_OWNER_SCOPE_KEY
from labcrunch_service.http.problems import PROBLEM_MEDIA_TYPE, error_response
from labcrunch_service.jobs.schemas import JobDocument, JobProgress
from labcrunch_service.jobs.store import (
    JobRecord,
    JobStore,
    SqliteJobStore,
    StoredAnswer,
    StoredRequest,
)
from labcrunch_service.settings import Settings

log = logging.getLogger(__name__)

#: Times a job may start running: once, and once more after a restart interrupted it.
MAX_ATTEMPTS = 2
#: Response headers not stored with an answer: they belong to one exchange, not to the result.
_EXCHANGE_HEADERS = frozenset({"content-length", "x-request-id", "date", "server", "connection",
                               "transfer-encoding"})

CallApp = Callable[[Receive, Send], Awaitable[None]]


def rfc3339(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


@dataclass
class _Live:
    """A job this process runs: its task, and the compute handle once it computes."""

    owner: str
    task: asyncio.Task[None] | None = None
    handle: job_context.ComputeHandle | None = None
    cancelled: bool = False


@dataclass
class _Answer:
    """An answer captured from the app's ``send``."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)

    def take(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            for name, value in message.get("headers", []):
                name = name.decode("latin-1").lower()
                if name not in _EXCHANGE_HEADERS:
                    self.headers[name] = value.decode("latin-1")
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")


class Submission:
    """The job a background request runs as: what ``Runner.run`` sees (a ``JobContext``)."""

    limit_name = "max_job_seconds"

    def __init__(self, manager: JobManager, request: StoredRequest, body: bytes, owner: str,
                 record: JobRecord | None = None) -> None:
        self.manager = manager
        self.request = request
        self.body = body
        self.owner = owner
        self.record = record  # None until the handler reaches the runner (a new submission)
        self.wall_seconds = manager.settings.limits.max_job_seconds
        self.accepted = asyncio.Event()
        if record is not None:  # sent again after a restart: nobody waits for a 202
            self.accepted.set()
        self.task: asyncio.Task[None] | None = None
        self._admitted = False

    async def admitted(self) -> None:
        if self._admitted:  # a handler that runs several tasks is one job
            return
        self._admitted = True
        if self.record is None:
            self.record = await self.manager._create(self)
            self.accepted.set()
        await self.manager._wait_turn(self.record)

    def attach(self, handle: job_context.ComputeHandle) -> None:
        if self.record is not None:
            self.manager._attach(self.record.id, handle)


def _replay_receive(body: bytes) -> Receive:
    """An ASGI ``receive`` that gives ``body`` once, then waits (nobody reads past the body)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    return receive


def _problem_of(answer: _Answer) -> dict[str, Any]:
    """The RFC 9457 problem of an error answer (every error answer of this service is one)."""
    try:
        problem = json.loads(bytes(answer.body))
        if isinstance(problem, dict) and "status" in problem:
            return problem
    except ValueError:
        pass
    return {"type": "about:blank", "title": "Error", "status": answer.status,
            "detail": bytes(answer.body[:500]).decode("utf-8", "replace")}


def _answer_of(error: LabcrunchError, instance: str) -> _Answer:
    response = error_response(error, instance=instance)
    answer = _Answer(status=response.status_code, body=bytearray(response.body))
    answer.headers = {k.lower(): v for k, v in response.headers.items()
                      if k.lower() not in _EXCHANGE_HEADERS}
    return answer


class JobManager:
    """Runs, stores, cancels and describes jobs; one per app (``app.state.jobs``)."""

    def __init__(self, settings: Settings, store: JobStore | None = None) -> None:
        self.settings = settings
        self.store = store or SqliteJobStore(settings.data_dir / "jobs")
        self.started = False
        self._app: ASGIApp | None = None
        self._live: dict[str, _Live] = {}
        self._waiting: dict[str, tuple[str, float, asyncio.Future[None]]] = {}
        self._running: dict[str, str] = {}  # job id -> owner, for each job holding a turn
        self._last_start: dict[str, int] = {}  # owner -> when it last started a job (a counter)
        self._starts = 0
        self._changed = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None
        self._counts: dict[str, int] = {}
        self._counting = False
        self._stopping = False  # from stop() on, what a job's handler answers is not its result
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def ttl_seconds(self) -> float:
        return self.settings.job_result_ttl

    # -- lifetime ------------------------------------------------------------------------------

    async def start(self, app: ASGIApp) -> None:
        """Open the store, drop what expired, and run again the jobs a stop left unfinished."""
        self._app = app
        self._stopping = False
        self._changed = asyncio.Event()  # bound to the serving loop
        await self.store.open()
        await self.store.expire(time.time())
        for record in await self.store.unfinished():
            if record.status == "running" and record.attempts >= MAX_ATTEMPTS:
                await self._fail(record, JobInterrupted(
                    f"The server stopped while this job ran, {record.attempts} times; it is not "
                    "run again. Submit it anew if it is expected to finish."))
                continue
            if record.status == "running":
                log.info("job %s was running when the server stopped: queued again", record.id)
                await self.store.update(record.id, status="queued", started=None)
            await self._resume(record)
        self._sweeper = asyncio.create_task(self._sweep(), name="job-expiry")
        await self._count()
        self.started = True

    async def stop(self) -> None:
        """Stop every job's task. A job that was running is stored as queued again (it was
        not its fault): the next start runs every unfinished job."""
        self.started, self._stopping = False, True
        interrupted = list(self._running)
        tasks = [live.task for live in self._live.values() if live.task is not None]
        if self._sweeper is not None:
            tasks.append(self._sweeper)
        tasks += self._tasks
        for live in self._live.values():
            if live.handle is not None:
                live.handle.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for job_id in interrupted:
            record = await self.store.get(job_id, time.time())
            if record is not None and record.status == "running":
                await self.store.update(job_id, status="queued", started=None,
                                        attempts=max(0, record.attempts - 1))
        self._live.clear()
        self._waiting.clear()
        self._running.clear()
        await self.store.close()

    async def _sweep(self) -> None:
        every = min(max(self.ttl_seconds / 4, 0.5), 300.0)
        while True:
            await asyncio.sleep(every)
            try:
                if await self.store.expire(time.time()):
                    self._notify()
            except Exception:  # a failed sweep is retried at the next
                log.exception("expiring jobs failed")

    # -- submitting and running ----------------------------------------------------------------

    async def submit(self, request: StoredRequest, body: bytes, owner: str, call_app: CallApp,
                     send: Send) -> JobDocument | None:
        """Run a request as a job. Returns the queued job's document once the handler reached
        the runner (answer 202), or None when the handler answered first (a 4xx before any work,
        or a route that computes nothing): that answer has then been sent through ``send``."""
        submission = Submission(self, request, body, owner)
        task = asyncio.create_task(self._execute(submission, call_app, relay=send),
                                   name=f"job {request.endpoint}")
        submission.task = task
        accepted = asyncio.ensure_future(submission.accepted.wait())
        try:
            await asyncio.wait({task, accepted}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            accepted.cancel()
        if submission.accepted.is_set():
            assert submission.record is not None
            record = await self.store.get(submission.record.id, time.time()) or submission.record
            return self.document(record)
        await task  # done: raises what the handler raised, as a synchronous request would
        return None

    async def _resume(self, record: JobRecord) -> None:
        """Send a stored job's request through the app again, as its owner."""
        try:
            body = await self.store.request_body(record.id)
        except OSError as lost:
            await self._fail(record, LabcrunchError(f"The stored request of this job is lost ({lost})."))
            return
        submission = Submission(self, record.request, body, record.owner, record)
        request = record.request
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1", "method": request.method, "scheme": "http",
            "path": request.path, "raw_path": request.path.encode(), "root_path": "",
            "query_string": request.query_string.encode("latin-1"),
            "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in request.headers.items()]
            + [(b"content-length", str(len(body)).encode())],
            "client": None, "server": None, REPLAY_OWNER_SCOPE_KEY: record.owner,
        }
        app = self._app
        assert app is not None

        async def call_app(receive: Receive, send: Send) -> None:
            await app(scope, receive, send)

        live = self._live[record.id] = _Live(owner=record.owner)
        submission.task = live.task = asyncio.create_task(
            self._execute(submission, call_app, relay=None), name=f"job {record.id}")

    async def _execute(self, submission: Submission, call_app: CallApp, relay: Send | None) -> None:
        """Run the request's handler with ``submission`` current; store what it answers."""
        answer = _Answer()

        async def send(message: Message) -> None:
            if not submission.accepted.is_set() and relay is not None:
                await relay(message)  # no job (yet): the client gets the answer as it is
            else:
                answer.take(message)

        progress = None
        try:
            try:
                with job_context.running_as(submission):
                    await call_app(_replay_receive(submission.body), send)
            except asyncio.CancelledError:
                raise  # cancelled (its status is stored), or the server stops (it runs again)
            except Exception:
                if not submission.accepted.is_set():
                    raise
                log.exception("job %s failed", submission.record.id if submission.record else "?")
                if not answer.status:  # an answer sent by the app's error handler is kept
                    answer = _answer_of(LabcrunchError(
                        "The server failed to compute this job; the error is logged."),
                        submission.request.path)
            finally:
                if submission.record is not None:
                    progress = self._progress_now(submission.record.id)
                    self._release_turn(submission.record.id)
            if submission.record is not None:
                await self._finish(submission.record, answer, progress)
        finally:
            if submission.record is not None:
                self._live.pop(submission.record.id, None)
                self._notify()

    async def _create(self, submission: Submission) -> JobRecord:
        """Store a new job (queued), within the owner's quotas: the handler reached the runner."""
        owner = submission.owner
        pending = sum(1 for live in self._live.values() if live.owner == owner)
        if pending >= self.settings.max_pending_jobs_per_owner:
            raise Busy(f"You have {pending} jobs queued or running, the most one owner may have "
                       "(max_pending_jobs_per_owner); wait for one to finish.",
                       retry_after=self.settings.retry_after_seconds)
        now = time.time()
        await self._check_storage(owner, len(submission.body), now)
        record = JobRecord(id=uuid.uuid4().hex, owner=owner, request=submission.request,
                           created=now, request_bytes=len(submission.body))
        self._live[record.id] = _Live(owner=owner, task=submission.task)
        try:
            await self.store.create(record, submission.body)
        except BaseException:
            self._live.pop(record.id, None)
            raise
        log.info("job %s queued: %s", record.id, record.endpoint,
                 extra={"job": record.id, "owner": owner})
        self._notify()
        return record

    async def _check_storage(self, owner: str, adding: int, now: float) -> None:
        cap = self.settings.limits.max_job_bytes_per_owner
        stored = await self.store.bytes_of(owner, now)
        if stored + adding > cap:
            raise LimitExceeded(
                f"Your jobs keep {stored} bytes stored and this one would add {adding}, over the "
                f"limit of {cap} bytes per owner (limits.max_job_bytes_per_owner). Finished jobs "
                f"are deleted {self.ttl_seconds:g} s after they finish (LABCRUNCH_JOB_RESULT_TTL).",
                limit="max_job_bytes_per_owner", maximum=cap, value=stored + adding)

    async def _wait_turn(self, record: JobRecord) -> None:
        """Wait in the queue until a turn is free and it is this job's, then mark it running."""
        turn = asyncio.get_running_loop().create_future()
        self._waiting[record.id] = (record.owner, record.created, turn)
        self._dispatch()
        await turn
        live = self._live.get(record.id)
        attempts = record.attempts + 1
        await self.store.update(record.id, status="running", started=time.time(), attempts=attempts)
        log.info("job %s running (attempt %d)", record.id, attempts, extra={"job": record.id})
        if live is not None and live.cancelled:  # cancelled while it was being marked running
            raise asyncio.CancelledError
        self._notify()

    def _start_order(self) -> list[str]:
        """The waiting jobs in the order they will start: the owner with the fewest jobs running
        goes first, ties to the one who started a job least recently; each owner's oldest first."""
        running = Counter(self._running.values())
        last = dict(self._last_start)
        queues: dict[str, deque[str]] = {}
        for job_id, (owner, _created, _turn) in sorted(self._waiting.items(),
                                                        key=lambda item: (item[1][1], item[0])):
            queues.setdefault(owner, deque()).append(job_id)
        order, clock = [], self._starts
        while queues:
            owner = min(queues, key=lambda o: (running[o], last.get(o, -1), o))
            order.append(queues[owner].popleft())
            if not queues[owner]:
                del queues[owner]
            running[owner] += 1
            clock += 1
            last[owner] = clock
        return order

    def _dispatch(self) -> None:
        order = self._start_order()
        while order and len(self._running) < self.settings.max_running_jobs:
            job_id = order.pop(0)
            owner, _, turn = self._waiting.pop(job_id)
            if turn.done():  # its task was cancelled while it waited
                continue
            self._running[job_id] = owner
            self._starts += 1
            self._last_start[owner] = self._starts
            turn.set_result(None)

    def _release_turn(self, job_id: str) -> None:
        self._waiting.pop(job_id, None)
        self._running.pop(job_id, None)
        self._dispatch()

    def _attach(self, job_id: str, handle: job_context.ComputeHandle) -> None:
        live = self._live.get(job_id)
        if live is not None:
            live.handle = handle
            if live.cancelled:
                handle.cancel()

    async def _finish(self, record: JobRecord, answer: _Answer,
                      progress: dict[str, Any] | None) -> None:
        live = self._live.get(record.id)
        if (live is not None and live.cancelled) or self._stopping:
            return  # cancelled: its status is stored already; the server stops: it runs again
        now = time.time()
        body = bytes(answer.body)
        succeeded = 200 <= answer.status < 300
        if succeeded:
            try:
                await self._check_storage(record.owner, len(body), now)
            except LimitExceeded as over:
                succeeded, answer = False, _answer_of(over, f"/v1/jobs/{record.id}")
                body = bytes(answer.body)
        # A cancel arriving from here on is stored after this (one store thread, in order).
        await self.store.save_answer(
            record.id, StoredAnswer(answer.status, answer.headers), body,
            status="succeeded" if succeeded else "failed", finished=now,
            expires=now + self.ttl_seconds, error=None if succeeded else _problem_of(answer),
            progress=progress)
        log.info("job %s %s", record.id, "succeeded" if succeeded else "failed",
                 extra={"job": record.id, "status": answer.status})

    async def _fail(self, record: JobRecord, error: LabcrunchError) -> None:
        now = time.time()
        answer = _answer_of(error, f"/v1/jobs/{record.id}")
        await self.store.save_answer(record.id, StoredAnswer(answer.status, answer.headers),
                                     bytes(answer.body), status="failed", finished=now,
                                     expires=now + self.ttl_seconds, error=_problem_of(answer))

    # -- reading and cancelling ----------------------------------------------------------------

    def _check_started(self) -> None:
        if not self.started:
            raise NotReady("Jobs are not available: the job store is not open.",
                           headers={"Retry-After": "1"})

    async def visible(self, job_id: str, owner: str | None) -> JobRecord:
        """The job, if ``owner`` may see it (None: everybody sees every job); else 404, also for
        another owner's job (its existence is not revealed)."""
        self._check_started()
        record = await self.store.get(job_id, time.time())
        if record is None or (owner is not None and record.owner != owner):
            raise NotFound(f"No job {job_id!r}: unknown, submitted with another API key, or "
                           "deleted after it expired (LABCRUNCH_JOB_RESULT_TTL).")
        return record

    async def page(self, owner: str | None, statuses: Sequence[str] | None, limit: int,
                   after: tuple[float, str] | None) -> list[JobRecord]:
        """``owner``'s jobs (everybody's for None), newest first, older than ``after``."""
        self._check_started()
        return await self.store.list(owner, statuses, time.time(), limit=limit, after=after)

    def _progress_now(self, job_id: str) -> dict[str, Any] | None:
        live = self._live.get(job_id)
        return None if live is None or live.handle is None else live.handle.progress()

    def document(self, record: JobRecord) -> JobDocument:
        """The job as /v1/jobs shows it: ``record`` with its live progress and queue position."""
        progress = self._progress_now(record.id) if record.status == "running" else record.progress
        position = None
        if record.status == "queued":
            order = self._start_order()
            position = order.index(record.id) + 1 if record.id in order else len(order) + 1
        return JobDocument(
            id=record.id, status=record.status, endpoint=record.endpoint, owner=record.owner,
            created=rfc3339(record.created), started=rfc3339(record.started),
            finished=rfc3339(record.finished), expires=rfc3339(record.expires),
            attempts=record.attempts, queue_position=position,
            progress=None if progress is None else JobProgress(**progress),
            error=record.error if record.status == "failed" else None,
            result=f"/v1/jobs/{record.id}/result" if record.status == "succeeded" else None)

    @staticmethod
    def retry_after(document: JobDocument) -> str | None:
        """A polling hint while the job is not finished: a tenth of what is left, 1-10 s."""
        if document.status == "queued":
            return "2"
        if document.status == "running":
            eta = document.progress.eta_seconds if document.progress else None
            return str(min(10, max(1, math.ceil((eta or 0) / 10))))
        return None

    async def cancel(self, record: JobRecord) -> JobRecord:
        """Cancel a queued job at once and a running one's computation (within 2 s with the
        worker scheduler; at its next progress report with the thread runner); idempotent."""
        if record.is_finished:
            return record
        live = self._live.get(record.id)
        progress = self._progress_now(record.id)
        if live is not None:
            live.cancelled = True
            if live.handle is not None:
                live.handle.cancel()
            if live.task is not None:
                live.task.cancel()
        now = time.time()
        await self.store.update(record.id, status="cancelled", finished=now,
                                expires=now + self.ttl_seconds, progress=progress)
        log.info("job %s cancelled", record.id, extra={"job": record.id})
        self._notify()
        return await self.store.get(record.id, now) or record

    async def answer(self, record: JobRecord) -> tuple[StoredAnswer, bytes]:
        assert record.answer is not None
        return record.answer, await self.store.answer_body(record.id)

    def jobs_by_status(self) -> dict[str, int]:
        """How many stored jobs are in each status, as of the last change: what ``/metrics``
        shows (a plain call, as a Prometheus collector reads at scrape time)."""
        return dict(self._counts)

    async def _count(self) -> None:
        self._counting = False
        with contextlib.suppress(Exception):  # the store closed meanwhile: counted at next start
            self._counts = await self.store.count_by_status(time.time())

    # -- change notification (the events stream) -----------------------------------------------

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        if self.started and not self._counting:  # one count for a burst of changes
            self._counting = True
            self._tasks.add(task := asyncio.get_running_loop().create_task(self._count()))
            task.add_done_callback(self._tasks.discard)

    async def changed(self, timeout: float) -> None:
        """Return when any job changes status, or after ``timeout`` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    async def events(self, job_id: str, *, poll_seconds: float = 0.5,
                     heartbeat_seconds: float = 15.0) -> AsyncIterator[str]:
        """Server-Sent Events: ``status`` (the job document) whenever the status or queue
        position changes, ``progress`` whenever the progress does; ends after the final status."""
        last_state: tuple[str, int | None] | None = None
        last_progress: JobProgress | None = None
        beat = time.monotonic()
        while True:
            record = await self.store.get(job_id, time.time())
            if record is None:
                yield _sse("gone", {"id": job_id, "detail": "The job expired."})
                return
            document = self.document(record)
            if (document.status, document.queue_position) != last_state:
                last_state = (document.status, document.queue_position)
                yield _sse("status", document.model_dump(mode="json"))
                beat = time.monotonic()
            if document.status == "running" and document.progress and document.progress != last_progress:
                last_progress = document.progress
                yield _sse("progress", document.progress.model_dump(mode="json"))
                beat = time.monotonic()
            if record.is_finished:
                return
            if time.monotonic() - beat > heartbeat_seconds:
                yield ": keep-alive\n\n"
                beat = time.monotonic()
            await self.changed(poll_seconds)


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def answer_headers(answer: StoredAnswer) -> dict[str, str]:
    """The stored answer's headers to send again (its media type travels as ``media_type``)."""
    return {k: v for k, v in answer.headers.items() if k != "content-type"}


def is_problem(answer: StoredAnswer) -> bool:
    return answer.media_type.startswith(PROBLEM_MEDIA_TYPE)
