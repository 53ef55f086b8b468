"""Long computations as server-side jobs (``/v1/jobs``): submit, watch, cancel, collect.

Every compute method of the client runs as a job through ``lc.submit``: the same method name and
arguments, answered at once with a :class:`Job` instead of the result::

    job = lc.submit.pyhf_upper_limit(model, (0.0, 5.0, 41))
    job.status()                     # 'queued', 'running', 'succeeded', 'failed', 'cancelled'
    job.progress                     # JobProgress(done=12.0, total=41.0, unit='points', ...)
    limit = job.result()             # waits, then parses exactly as lc.pyhf_upper_limit does
    job.cancel()

``job.wait(progress=True)`` draws a progress bar (tqdm; in Jupyter a widget) fed by the job's
event stream. The long synchronous methods take ``progress=True`` to do all of it in one call:
``lc.pyhf_upper_limit(model, scan, progress=True)``. ``lc.jobs()`` lists your jobs. With
:class:`~labcrunch.AsyncClient` every call is awaited (``await alc.submit.gradient(...)`` gives an
:class:`AsyncJob`).
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import json
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Concatenate, Generic, Literal, ParamSpec, TypeVar, overload

import httpx

from labcrunch._base import AsyncTransport, Call, SyncTransport, endpoint, json_answer
from labcrunch._repr import ShortRepr
from labcrunch.exceptions import APIConnectionError
from labcrunch.fit import FitAPI
from labcrunch.fractal import FractalAPI
from labcrunch.gradient import GradientAPI
from labcrunch.minimize import MinimizeAPI
from labcrunch.nn import NnAPI
from labcrunch.pyhf import PyhfAPI

T = TypeVar("T")
P = ParamSpec("P")
ClientT = TypeVar("ClientT", SyncTransport, AsyncTransport)

#: Where a job is: waiting its turn, computing, or finished one of three ways.
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
#: Seconds between two looks at a job when its event stream cannot be followed.
POLL_SECONDS = 1.0
#: Seconds without a byte on the event stream before it is given up for polling (the server
#: sends a comment every 15 s).
EVENTS_READ_TIMEOUT = 45.0


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


@dataclass(frozen=True, repr=False)
class JobProgress(ShortRepr):
    """How far a running job has got.

    Attributes:
        done: Units finished.
        total: Units in all (None when unknown).
        unit: What is counted: ``steps``, ``epochs``, ``points``, ``iterations``, ...
        fraction: ``done / total`` (None when unknown).
        eta_seconds: Seconds left at the pace so far (None when unknown).
    """

    done: float
    total: float | None
    unit: str
    fraction: float | None
    eta_seconds: float | None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> JobProgress:
        return cls(done=float(body["done"]), total=body.get("total"), unit=str(body.get("unit", "")),
                   fraction=body.get("fraction"), eta_seconds=body.get("eta_seconds"))


@dataclass(frozen=True, repr=False)
class JobInfo(ShortRepr):
    """A job as the server describes it (``GET /v1/jobs/{id}``).

    Attributes:
        id: The job's id (its URL is ``/v1/jobs/{id}``).
        status: ``queued``, ``running``, ``succeeded``, ``failed`` or ``cancelled``.
        endpoint: The request it runs, e.g. ``"POST /v1/pyhf/upper-limit"``.
        owner: The name of the API key that submitted it (else the client's address).
        created, started, finished: When (UTC); None until it happens.
        expires: When the finished job and its result are deleted on the server.
        attempts: Times it started running (a server restart runs it again once).
        queue_position: While queued: 1 starts next.
        progress: While running: the computation's last report.
        error: When failed: the problem (RFC 9457) the synchronous call would have raised.
        result: When succeeded: the result's URL.
    """

    id: str
    status: JobStatus
    endpoint: str
    owner: str
    created: datetime
    started: datetime | None = None
    finished: datetime | None = None
    expires: datetime | None = None
    attempts: int = 0
    queue_position: int | None = None
    progress: JobProgress | None = None
    error: dict[str, Any] | None = None
    result: str | None = None

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> JobInfo:
        progress = body.get("progress")
        return cls(id=body["id"], status=body["status"], endpoint=body["endpoint"],
                   owner=body["owner"], created=_time(body["created"]) or datetime.now(UTC),
                   started=_time(body.get("started")), finished=_time(body.get("finished")),
                   expires=_time(body.get("expires")), attempts=int(body.get("attempts", 0)),
                   queue_position=body.get("queue_position"),
                   progress=None if progress is None else JobProgress.from_json(progress),
                   error=body.get("error"), result=body.get("result"))


def _job_list(response: httpx.Response) -> list[JobInfo]:
    return [JobInfo.from_json(job) for job in response.json()["jobs"]]


class _EventParser:
    """Server-Sent Events, line by line: yields ``(event, data)`` at each blank line."""

    def __init__(self) -> None:
        self.event = "message"
        self.data: list[str] = []

    def feed(self, line: str) -> tuple[str, Any] | None:
        if not line:
            if not self.data:
                return None
            found = (self.event, json.loads("\n".join(self.data)))
            self.event, self.data = "message", []
            return found
        if line.startswith(":"):
            return None  # a comment: the server's keep-alive
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self.event = value
        elif name == "data":
            self.data.append(value)
        return None


def _whole(count: float | None) -> float | int | None:
    """A count as tqdm shows it best: whole numbers without a decimal point."""
    return int(count) if count is not None and float(count).is_integer() else count


class _Bar:
    """The progress bar of one job (tqdm, imported when first drawn); does nothing when off."""

    def __init__(self, enabled: bool, info: JobInfo) -> None:
        self.enabled = enabled
        self.bar: Any = None
        self.unit: str | None = None
        self.description = f"{info.endpoint} [{info.id[:8]}]"

    def show(self, info: JobInfo) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            tqdm = importlib.import_module("tqdm.auto").tqdm  # imported when a bar is drawn

            self.bar = tqdm(desc=self.description, total=None, leave=True, dynamic_ncols=True)
        progress = info.progress
        if progress is not None:
            if progress.unit != self.unit:
                self.unit = progress.unit
                self.bar.unit = f" {progress.unit}"
                self.bar.reset(total=_whole(progress.total))
            self.bar.total = _whole(progress.total)
            self.bar.n = _whole(progress.done)
        if info.status == "succeeded" and self.bar.total:
            self.bar.n = self.bar.total
        position = f" (#{info.queue_position} in queue)" if info.queue_position else ""
        self.bar.set_postfix_str(info.status + position, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _JobBase(Generic[T]):
    """What :class:`Job` and :class:`AsyncJob` share: the job's last known state and the calls."""

    def __init__(self, call: Call[T], info: JobInfo, answer: httpx.Response | None = None) -> None:
        self._call = call  # the submitted request: its Accept header and how to parse the answer
        self._info = info
        self._answer = answer  # a server that answered at once (the preference not applied)

    @property
    def id(self) -> str:
        return self._info.id

    @property
    def info(self) -> JobInfo:
        """The job as last seen (``status()``, ``refresh()``, ``wait()`` see it anew)."""
        return self._info

    @property
    def progress(self) -> JobProgress | None:
        """The last progress seen (None before the job reports any)."""
        return self._info.progress

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self._info.endpoint} {self._info.status}>"

    def _info_call(self, method: str = "GET") -> Call[JobInfo]:
        return Call(method, f"/v1/jobs/{self.id}", json_answer(JobInfo.from_json))

    def _result_call(self) -> Call[T]:
        accept = {k: v for k, v in self._call.headers.items() if k.lower() == "accept"}
        return Call("GET", f"/v1/jobs/{self.id}/result", self._call.parse, headers=accept,
                    timeout=self._call.timeout, max_retries=self._call.max_retries)

    def _seen(self, event: str, data: Any, bar: _Bar) -> None:
        if event == "status":
            self._info = JobInfo.from_json(data)
        elif event == "progress":
            self._info = replace(self._info, progress=JobProgress.from_json(data))
        bar.show(self._info)

    def _events_request(self, deadline: float | None) -> tuple[str, httpx.Timeout]:
        """The event stream's URL and read timeout (the deadline's, or the keep-alive's)."""
        left = self._left(deadline)
        read = EVENTS_READ_TIMEOUT if left is None else min(EVENTS_READ_TIMEOUT, left)
        return f"/v1/jobs/{self.id}/events", httpx.Timeout(read)

    def _take(self, parser: _EventParser, line: str, deadline: float | None, bar: _Bar) -> bool:
        """One line of the event stream; True once the job has finished."""
        found = parser.feed(line)
        if found is not None:
            self._seen(*found, bar)
            if self._info.is_finished:
                return True
        self._left(deadline)
        return False

    @staticmethod
    def _left(deadline: float | None) -> float | None:
        if deadline is None:
            return None
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("The job did not finish in time; it goes on on the server.")
        return left


def _submitted(call: Call[Any], response: httpx.Response) -> tuple[JobInfo, httpx.Response | None]:
    """The job a submit request made (202), or the answer of a server that computed at once."""
    if response.status_code == 202:
        return JobInfo.from_json(response.json()), None
    now = datetime.now(UTC)
    return JobInfo(id="", status="succeeded", endpoint=f"{call.method} {call.path}", owner="",
                   created=now, started=now, finished=now), response


def _submit_call(call: Call[T]) -> Call[httpx.Response]:
    """``call`` asking for an asynchronous answer: 202 and a job, or (an old server) the answer."""
    return Call(call.method, call.path, lambda response: response, json=call.json,
                content=call.content, params=call.params,
                headers={**call.headers, "Prefer": "respond-async"}, timeout=call.timeout,
                max_retries=call.max_retries)


class Job(_JobBase[T]):
    """A computation running on the server (``lc.submit.<method>(...)``); ``result()`` gives
    what the synchronous method returns.

    Example:
        >>> job = lc.submit.gradient("x**3", at={"x": 2.0})
        >>> float(job.result().gradient["x"]), job.status()
        (12.0, 'succeeded')
    """

    def __init__(self, client: SyncTransport, call: Call[T], info: JobInfo,
                 answer: httpx.Response | None = None) -> None:
        super().__init__(call, info, answer)
        self._client = client

    def refresh(self) -> JobInfo:
        """The job now (``GET /v1/jobs/{id}``)."""
        if self._answer is None:
            self._info = self._client._send(self._info_call())
        return self._info

    def status(self) -> JobStatus:
        """``queued``, ``running``, ``succeeded``, ``failed`` or ``cancelled``, asked now."""
        return self.refresh().status

    def cancel(self) -> JobInfo:
        """Cancel the job (``DELETE /v1/jobs/{id}``): a queued one at once, a running one within
        seconds; a finished job stays as it is."""
        if self._answer is None:
            self._info = self._client._send(self._info_call("DELETE"))
        return self._info

    def wait(self, timeout: float | None = None, *, progress: bool = True) -> JobInfo:
        """Wait until the job has finished, drawing a progress bar when ``progress``.

        Args:
            timeout: Seconds to wait at most (None: as long as it takes).
            progress: Draw a tqdm bar of the job's progress.

        Returns:
            JobInfo: the finished job.

        Raises:
            TimeoutError: Still not finished after ``timeout`` s (the job goes on).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = _Bar(progress, self._info)
        try:
            bar.show(self._info)
            while not self._info.is_finished:
                try:
                    self._follow(deadline, bar)
                except (httpx.TransportError, APIConnectionError):
                    pass  # the stream broke (a proxy, a restart): look again below
                if not self._info.is_finished:
                    left = self._left(deadline)
                    time.sleep(POLL_SECONDS if left is None else min(POLL_SECONDS, left))
                    self.refresh()
                    bar.show(self._info)
        finally:
            bar.close()
        return self._info

    def _follow(self, deadline: float | None, bar: _Bar) -> None:
        """Read the job's event stream until its final status (or the deadline)."""
        url, timeout = self._events_request(deadline)
        parser = _EventParser()
        with self._client._http.stream("GET", url, timeout=timeout) as response:
            if response.status_code == 200:
                for line in response.iter_lines():
                    if self._take(parser, line, deadline, bar):
                        return

    def result(self, timeout: float | None = None, *, progress: bool = False) -> T:
        """The result, once the job has finished: parsed exactly as the synchronous method does.

        Args:
            timeout: Seconds to wait at most (None: as long as it takes).
            progress: Draw a progress bar while waiting.

        Raises:
            TimeoutError: Still not finished after ``timeout`` s (the job goes on).
            APIStatusError: The job failed (the exception the synchronous call would have
                raised: ``ValidationError``, ...) or was cancelled (409).
        """
        if self._answer is not None:
            return self._client._result(self._call, self._answer)
        self.wait(timeout, progress=progress)
        return self._client._send(self._result_call())


class AsyncJob(_JobBase[T]):
    """:class:`Job` for :class:`~labcrunch.AsyncClient`: the same methods, awaited."""

    def __init__(self, client: AsyncTransport, call: Call[T], info: JobInfo,
                 answer: httpx.Response | None = None) -> None:
        super().__init__(call, info, answer)
        self._client = client

    async def refresh(self) -> JobInfo:
        """The job now (``GET /v1/jobs/{id}``)."""
        if self._answer is None:
            self._info = await self._client._send(self._info_call())
        return self._info

    async def status(self) -> JobStatus:
        """``queued``, ``running``, ``succeeded``, ``failed`` or ``cancelled``, asked now."""
        return (await self.refresh()).status

    async def cancel(self) -> JobInfo:
        """Cancel the job (see :meth:`Job.cancel`)."""
        if self._answer is None:
            self._info = await self._client._send(self._info_call("DELETE"))
        return self._info

    async def wait(self, timeout: float | None = None, *, progress: bool = True) -> JobInfo:
        """Wait until the job has finished (see :meth:`Job.wait`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = _Bar(progress, self._info)
        try:
            bar.show(self._info)
            while not self._info.is_finished:
                try:
                    await self._follow(deadline, bar)
                except (httpx.TransportError, APIConnectionError):
                    pass
                if not self._info.is_finished:
                    left = self._left(deadline)
                    await asyncio.sleep(POLL_SECONDS if left is None else min(POLL_SECONDS, left))
                    await self.refresh()
                    bar.show(self._info)
        finally:
            bar.close()
        return self._info

    async def _follow(self, deadline: float | None, bar: _Bar) -> None:
        url, timeout = self._events_request(deadline)
        parser = _EventParser()
        async with self._client._http.stream("GET", url, timeout=timeout) as response:
            if response.status_code == 200:
                async for line in response.aiter_lines():
                    if self._take(parser, line, deadline, bar):
                        return

    async def result(self, timeout: float | None = None, *, progress: bool = False) -> T:
        """The result, once the job has finished (see :meth:`Job.result`)."""
        if self._answer is not None:
            return self._client._result(self._call, self._answer)
        await self.wait(timeout, progress=progress)
        return await self._client._send(self._result_call())


def submit(client: SyncTransport, call: Call[T]) -> Job[T]:
    """Send ``call`` as a job."""
    return Job(client, call, *_submitted(call, client._send(_submit_call(call))))


async def submit_async(client: AsyncTransport, call: Call[T]) -> AsyncJob[T]:
    """Send ``call`` as a job, awaited."""
    return AsyncJob(client, call, *_submitted(call, await client._send(_submit_call(call))))


def run_with_progress(client: SyncTransport, call: Call[T]) -> T:
    """``call`` as a job, waited for with a progress bar: what ``progress=True`` does."""
    return submit(client, replace(call, progress=False)).result(progress=True)


async def run_with_progress_async(client: AsyncTransport, call: Call[T]) -> T:
    return await (await submit_async(client, replace(call, progress=False))).result(progress=True)


class submitted(Generic[P, T]):  # noqa: N801 - used like a method, as `endpoint`
    """One compute method of ``lc.submit``: the endpoint's arguments; a job of its result."""

    def __init__(self, method: Callable[Concatenate[Any, P], T]) -> None:
        # The endpoint's Call builder (its client-facing function wraps it, functools.wraps).
        self.build: Callable[..., Call[T]] = getattr(method, "__wrapped__")  # noqa: B009
        self.__doc__ = (f"{method.__name__}() as a job: the same arguments; returns a Job whose "
                        f"result() is what {method.__name__}() returns.")

    @overload
    def __get__(self, submitting: Submit[SyncTransport], owner: type[Any] | None = None,
                ) -> Callable[P, Job[T]]: ...

    @overload
    def __get__(self, submitting: Submit[AsyncTransport], owner: type[Any] | None = None,
                ) -> Callable[P, Coroutine[Any, Any, AsyncJob[T]]]: ...

    @overload
    def __get__(self, submitting: None, owner: type[Any] | None = None) -> submitted[P, T]: ...

    def __get__(self, submitting: Any, owner: type[Any] | None = None) -> Any:
        if submitting is None:  # looked up on the class (help(), dir())
            return self
        client = submitting._client
        build = self.build
        if isinstance(client, AsyncTransport):
            async def send_async(*args: Any, **kwargs: Any) -> AsyncJob[T]:
                return await submit_async(client, build(client, *args, **kwargs))

            return functools.update_wrapper(send_async, build)
        def send(*args: Any, **kwargs: Any) -> Job[T]:
            return submit(client, build(client, *args, **kwargs))

        return functools.update_wrapper(send, build)


class Submit(Generic[ClientT]):
    """``lc.submit``: every compute method of the client, run as a server-side job.

    ``lc.submit.<method>(...)`` takes exactly the arguments of ``lc.<method>(...)`` and returns a
    :class:`Job` (with an :class:`~labcrunch.AsyncClient`, an awaitable :class:`AsyncJob`) as soon
    as the server has validated the request and queued it.
    """

    def __init__(self, client: ClientT) -> None:
        self._client: ClientT = client

    gradient = submitted(GradientAPI.gradient)
    minimize = submitted(MinimizeAPI.minimize)
    fit_line = submitted(FitAPI.fit_line)
    pyhf_fit = submitted(PyhfAPI.pyhf_fit)
    pyhf_fit_batch = submitted(PyhfAPI.pyhf_fit_batch)
    pyhf_scan = submitted(PyhfAPI.pyhf_scan)
    pyhf_hypotest = submitted(PyhfAPI.pyhf_hypotest)
    pyhf_upper_limit = submitted(PyhfAPI.pyhf_upper_limit)
    fractal = submitted(FractalAPI.fractal)
    fractal_counts = submitted(FractalAPI.fractal_counts)
    fractal_tile = submitted(FractalAPI.fractal_tile)
    dense_weights = submitted(NnAPI.dense_weights)
    dense_predict = submitted(NnAPI.dense_predict)
    dense_train = submitted(NnAPI.dense_train)


class _SubmitAccessor:
    @overload
    def __get__(self, client: SyncTransport, owner: type[Any] | None = None) -> Submit[SyncTransport]: ...

    @overload
    def __get__(self, client: AsyncTransport, owner: type[Any] | None = None) -> Submit[AsyncTransport]: ...

    @overload
    def __get__(self, client: None, owner: type[Any] | None = None) -> _SubmitAccessor: ...

    def __get__(self, client: Any, owner: type[Any] | None = None) -> Any:
        return self if client is None else Submit(client)


class JobsAPI:
    """``submit`` and ``jobs`` of :class:`labcrunch.Client` and :class:`labcrunch.AsyncClient`."""

    #: Every compute method as a job: ``lc.submit.gradient(...)`` returns a :class:`Job`.
    submit = _SubmitAccessor()

    @endpoint
    def jobs(
        self,
        *,
        status: JobStatus | Iterable[JobStatus] | None = None,
        limit: int = 50,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> Call[list[JobInfo]]:
        """Your jobs on the server, newest first (``GET /v1/jobs``); a server without API keys
        lists everybody's.

        Example:
            >>> job = lc.submit.gradient("x**2", at={"x": 1.0})
            >>> job.result().value.item(), job.id in [j.id for j in lc.jobs(status="succeeded")]
            (1.0, True)

        Args:
            status: Only jobs in this status (or these statuses).
            limit: At most this many (1-500).
            timeout: Seconds to wait for the answer (default: the client's).
            max_retries: Retries of this call (default: the client's).

        Returns:
            list[JobInfo]: the jobs, newest first.
        """
        statuses = [status] if isinstance(status, str) else list(status or ())
        return Call("GET", "/v1/jobs", _job_list, params={"status": statuses, "limit": limit},
                    timeout=timeout, max_retries=max_retries)
