"""The fair scheduler: owners' queues, the worker pool, and the hard limits on every job.

Jobs wait in one queue per *owner* (an API key's name, or a client address); whenever a worker
is free it takes the first job of the waiting owner served longest ago (round-robin, a newcomer
first), never the oldest job of everybody, so one owner's flood delays another owner's request
by at most one job. Per-owner
quotas refuse (429 + Retry-After) the owner over them, nobody else; a global bound caps all
queues together. Quotas, wall time and memory budget travel with each job (:class:`Quota`), so
apps with different limits can share one pool of workers.

Workers (:mod:`worker`) are Ray actors: ``cpu_workers`` per node, and one per GPU (or
``gpu_workers_per_device`` sharing a card). A free worker is chosen GPU first, then in a fixed
order, so light load keeps landing on the same warm worker.

A supervisor thread enforces what a job cannot be trusted to enforce itself:

* **wall time**: past its deadline a job is answered 503 at once; if it has not stopped by
  itself (``progress.check_deadline``) :data:`KILL_GRACE_SECONDS` later, its worker process is
  ended (``ray.kill``), restarted by Ray, and warms up again;
* **memory**: a worker whose resident memory passes the job's budget is ended the same way, and
  the job answers 413 naming ``worker_memory_bytes``;
* **crashes**: a worker that dies (segfault, OOM killer, ``kill -9``) fails only its job, which
  is run once more on another worker first (computations are pure), and is replaced.

Cancelling a job (:meth:`Job.cancel`) drops it from its queue, or ends its worker within the same
poll. Pools are shared by every app of the process whose worker settings agree (:func:`acquire`).
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures
import functools
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psutil
import ray
from ray.exceptions import ActorDiedError, RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from labcrunch_service.compute import cluster
from labcrunch_service.compute.exchange import Exchange, Lease, Packed, numbers_only
from labcrunch_service.compute.tasks import Failure, Task, Timed, WorkerError
from labcrunch_service.compute.worker import CONTROL, Worker, WorkerSpec
from labcrunch_service.errors import (
    BackendUnavailable,
    Busy,
    Cancelled,
    ComputeTimeout,
    LimitExceeded,
    ShuttingDown,
    WorkerLost,
)

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05  # deadlines and local memory are checked this often
STATUS_SECONDS = (0.25, 2.0)  # progress/memory polls of a busy, an idle worker
NODES_SECONDS = 2.0  # new or lost nodes are noticed this often
KILL_GRACE_SECONDS = 0.5  # a job past its deadline may stop itself this long before its worker is ended
READY_RETRY_SECONDS = 0.25
INLINE_BYTES = 256 * 1024  # larger arguments (payload_bytes) go through the object store
MAX_CPU_WORKERS = 8  # the default per node: one per core up to this (each holds its own caches)

#: Why a worker process was ended or lost: the ``reason`` label of the metrics.
KILL_REASONS = ("deadline", "memory", "cancel", "crash")
FINISHED = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class Quota:
    """The limits a job is submitted under (its app's settings)."""

    max_queued_jobs: int = 64
    max_queued_per_owner: int = 16
    max_running_per_owner: int | None = None
    retry_after: int = 2
    worker_memory_bytes: int | None = None


@dataclass(frozen=True, eq=False)
class PoolSpec:
    """Where the workers run, how many, and what they start with."""

    address: str | None
    cpu_workers: int | None
    gpu_workers_per_device: int
    worker: WorkerSpec
    shared_memory_bytes: int = 0  # the HTTP process's blocks for local workers (exchange.py)

    @property
    def key(self) -> tuple[Any, ...]:
        """Equal for two apps whose workers are interchangeable."""
        return (self.address, self.cpu_workers, self.gpu_workers_per_device, self.worker.key)


class Job:
    """One computation: queued, running, then succeeded, failed or cancelled.

    ``future`` holds the :class:`Timed` result or the exception the caller should see;
    :meth:`progress` is the last progress the worker reported (the scheduler polls it).
    """

    def __init__(self, scheduler: Scheduler, task: Task, payload: Any, *, owner: str, quota: Quota,
                 wall_seconds: float, limit_name: str, request_id: str | None) -> None:
        self.id = uuid.uuid4().hex
        self.scheduler = scheduler
        self.task = task
        self.payload = payload  # (args, kwargs), an object-store reference to them, or Packed
        self.lease: Lease | None = None  # the shared-memory block a Packed payload is in
        self.owner = owner
        self.quota = quota
        self.wall_seconds = wall_seconds
        self.limit_name = limit_name
        self.request_id = request_id
        self.created = time.time()
        self.started: float | None = None
        self.finished: float | None = None
        self.deadline = time.monotonic() + wall_seconds
        self.state = "queued"
        self.worker: WorkerSlot | None = None
        self.attempts = 0
        self.kill_reason: str | None = None
        self.last_progress: dict[str, Any] | None = None
        self.future: concurrent.futures.Future[Timed[Any]] = concurrent.futures.Future()

    def result(self, timeout: float | None = None) -> Timed[Any]:
        """The task's :class:`Timed` result; raises the error it answered with."""
        return self.future.result(timeout)

    def done(self) -> bool:
        return self.state in FINISHED

    def cancel(self) -> bool:
        """Stop the job: dropped if queued, its worker ended if running. False if already done."""
        return self.scheduler.cancel(self)

    def progress(self) -> dict[str, Any] | None:
        """``done``, ``total``, ``unit``, ``fraction``, ``eta_seconds`` as last reported."""
        return self.last_progress

    def queue_position(self) -> int | None:
        """0 for the next of its owner's jobs to run, None once started."""
        return self.scheduler.queue_position(self)

    def _settle(self, state: str, *, result: Any = None, error: BaseException | None = None) -> bool:
        if self.state in FINISHED:
            return False
        self.state, self.finished = state, time.time()
        self.payload = None  # the arguments (maybe large arrays) are not needed any more
        if self.lease is not None:
            self.lease.abandon()  # unless the worker answered: it may still write into the block
            self.lease = None
        if self.future.cancelled():  # the caller stopped waiting
            return True
        if error is None:
            self.future.set_result(result)
        else:
            self.future.set_exception(error)
        return True


@dataclass(eq=False)
class WorkerSlot:
    """One worker of the pool and what the scheduler knows of it."""

    index: int
    device: str  # "cpu" or "gpu"
    node_id: str
    actor: Any
    state: str = "warming"  # warming, idle, busy, restarting, stopped
    job: Job | None = None
    info: dict[str, Any] = field(default_factory=dict)  # what ready() answered
    pid: int | None = None
    dead_pid: int | None = None  # the process a restart replaces (ready() from it does not count)
    restart_began: float = 0.0
    rss_bytes: int | None = None
    gpu_memory_bytes: int | None = None
    caches: list[dict[str, Any]] = field(default_factory=list)
    memory_budget: int | None = None  # the default budget of this worker's node share
    restarts: int = 0
    jobs_done: int = 0
    kills: collections.Counter[str] = field(default_factory=collections.Counter)
    ready_pending: bool = False
    ready_after: float = 0.0
    status_pending: bool = False
    status_after: float = 0.0
    process: psutil.Process | None = None  # when the worker runs on this machine

    @property
    def name(self) -> str:
        return f"{self.device}-{self.index}"

    def describe(self) -> dict[str, Any]:
        job = self.job
        return {
            "id": self.name, "node": self.info.get("hostname") or self.node_id[:12],
            "node_id": self.node_id, "device": self.info.get("devices", {}).get("jax", self.device),
            "state": self.state, "pid": self.pid,
            "task": job.task.path if job else None, "owner": job.owner if job else None,
            "running_seconds": round(time.time() - job.started, 3) if job and job.started else None,
            "jobs_done": self.jobs_done, "restarts": self.restarts, "rss_bytes": self.rss_bytes,
            "memory_budget_bytes": self.memory_budget, "gpu_memory_bytes": self.gpu_memory_bytes,
        }


def payload_bytes(value: Any) -> int:
    """About how many bytes ``value`` takes to send: its numpy arrays' bytes and 8 per number of
    a list or tuple of numbers (a JSON body's points), nested in tuples, lists and dicts. A list
    whose first item is a number counts as numbers only: a JSON batch of 10⁵ points is never
    walked number by number (on the event loop, twice per request)."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, Packed):
        return payload_bytes(value.payload)
    if isinstance(value, dict):
        return sum(payload_bytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        if numbers_only(value):
            return 8 * len(value)
        return sum(payload_bytes(v) for v in value)
    return 0


class Scheduler:
    """The owners' queues and the workers of one pool (see the module's docstring)."""

    def __init__(self, spec: PoolSpec) -> None:
        self.spec = spec
        self.workers: list[WorkerSlot] = []
        self.ready = threading.Event()  # every first worker has warmed up (or the pool failed)
        self.error: str | None = None  # why the pool could not start
        self.kills: collections.Counter[str] = collections.Counter()
        self._lock = threading.RLock()
        self._queues: dict[str, collections.deque[Job]] = {}
        self._served: dict[str, int] = {}  # owner → when last given a worker (a dispatch count)
        self._indexes: collections.Counter[str] = collections.Counter()  # next worker number per device
        self._dispatches = 0
        self._running: collections.Counter[str] = collections.Counter()
        self._stopping = threading.Event()
        self._nodes_after = 0.0
        self._local_node: str | None = None
        self._thread = threading.Thread(target=self._supervise, name="scheduler", daemon=True)
        self.exchange = Exchange(spec.shared_memory_bytes)

    # --- public interface ----------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any], *, owner: str,
               quota: Quota, wall_seconds: float, limit_name: str = "max_wall_seconds",
               request_id: str | None = None) -> Job:
        """Queue ``task(*args, **kwargs)`` for ``owner``; :class:`Busy` (429) over a quota."""
        payload: Any = (args, kwargs)
        lease = None
        if payload_bytes(payload) > INLINE_BYTES and ray.is_initialized():
            payload, lease = self._share(payload)
        job = Job(self, task, payload, owner=owner, quota=quota, wall_seconds=wall_seconds,
                  limit_name=limit_name, request_id=request_id)
        job.lease = lease
        try:
            with self._lock:
                if self.error is not None:
                    raise BackendUnavailable(f"The compute workers could not start: {self.error}")
                if self._stopping.is_set():
                    raise ShuttingDown("The service is shutting down; retry shortly.",
                                       headers={"Retry-After": "5"})
                self._admit(job)
                self._queues.setdefault(owner, collections.deque()).append(job)
                started = self._dispatch()
        except BaseException:
            if lease is not None:
                lease.give_back()  # refused (429, 503): no worker saw the block
            raise
        self._launch(started)
        return job

    def _share(self, payload: Any) -> tuple[Any, Lease | None]:
        """A large payload as it will travel: its arrays in a block of shared memory when a
        worker runs on this process's node (:mod:`exchange`), else all of it put once into
        Ray's object store, which the worker maps."""
        local = any(slot.node_id == self._local_node for slot in self.workers)
        shared = self.exchange.pack(payload) if local else None
        if shared is not None and payload_bytes(shared[0]) <= INLINE_BYTES:
            return shared
        if shared is not None:
            shared[1].give_back()  # what is left is still large: a JSON batch's numbers
        return ray.put(payload), None

    def cancel(self, job: Job) -> bool:
        with self._lock:
            if job.done():
                return False
            if job.state == "queued":
                self._unqueue(job)
                return job._settle("cancelled", error=Cancelled("The job was cancelled while queued."))
            job._settle("cancelled", error=Cancelled("The job was cancelled while running."))
            if job.worker is not None and job.worker.job is job:
                self._kill(job.worker, "cancel")
            return True

    def queue_position(self, job: Job) -> int | None:
        with self._lock:
            queue = self._queues.get(job.owner)
            if job.state != "queued" or not queue:
                return None
            return next((i for i, queued in enumerate(queue) if queued is job), None)

    def snapshot(self) -> dict[str, Any]:
        """Workers, queues and counters, for /v1/info and /metrics."""
        with self._lock:
            return {
                "workers": [slot.describe() | {"kills": dict(slot.kills), "caches": list(slot.caches)}
                            for slot in self.workers],
                "queued": {owner: len(queue) for owner, queue in self._queues.items()},
                "running": dict(self._running),
                "kills": dict(self.kills),
                "restarts": sum(slot.restarts for slot in self.workers),
                "backends": next((slot.info["backends"] for slot in self._by_preference()
                                  if "backends" in slot.info), {}),
                "warmup_errors": {path: error for slot in self.workers
                                  for path, error in slot.info.get("warmup_errors", {}).items()},
                "error": self.error,
                "shared_memory": self.exchange.describe(),
            }

    def broadcast(self, task: Task, *args: Any, timeout: float = 60.0, **kwargs: Any) -> list[Any]:
        """Run ``task`` at once on every warm worker (beside any job); their results in order."""
        with self._lock:
            slots = [slot for slot in self.workers if slot.state in ("idle", "busy")]
        results = ray.get([slot.actor.call.remote(task.path, args, kwargs) for slot in slots],
                          timeout=timeout)
        for result in results:
            if isinstance(result, Failure):
                raise result.exception()
        return results

    def wait_idle(self, timeout: float = 120.0) -> None:
        """Block until every worker is warm and idle and nothing is queued (tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.workers and not self._queues and all(s.state == "idle" for s in self.workers):
                    return
            time.sleep(0.05)
        raise TimeoutError(f"workers not idle after {timeout:g} s: {self.snapshot()['workers']}")

    def stop(self) -> None:
        """Fail what is queued or running, end every worker, stop the supervisor."""
        self._stopping.set()
        with self._lock:
            stopping = ShuttingDown("The service is shutting down; this computation was stopped.",
                                    headers={"Retry-After": "5"})
            for queue in self._queues.values():
                for job in queue:
                    job._settle("cancelled", error=stopping)
            self._queues.clear()
            for slot in self.workers:
                if slot.job is not None:
                    slot.job._settle("cancelled", error=stopping)
                slot.state = "stopped"
            slots, self.workers = self.workers, []
        if ray.is_initialized():
            for slot in slots:
                try:
                    ray.kill(slot.actor, no_restart=True)
                except Exception:  # noqa: BLE001 - already gone
                    pass
        self.exchange.close()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)

    # --- admission and dispatch (under the lock) --------------------------------------------

    def _admit(self, job: Job) -> None:
        quota, owner = job.quota, job.owner
        waiting = len(self._queues.get(owner, ()))
        if waiting == 0 and self._can_start_now(owner, quota):
            return  # it will not wait: queue places are for waiting jobs
        if waiting >= quota.max_queued_per_owner:
            raise Busy(f"{owner!r} already has {waiting} computations waiting (at most "
                       f"{quota.max_queued_per_owner} per owner: max_queued_per_owner); retry "
                       "later.", retry_after=quota.retry_after)
        total = sum(len(queue) for queue in self._queues.values())
        if total >= quota.max_queued_jobs:
            raise Busy(f"{total} computations are waiting for a compute worker (at most "
                       f"{quota.max_queued_jobs}: max_queued_jobs); retry later.",
                       retry_after=quota.retry_after)

    def _can_start_now(self, owner: str, quota: Quota) -> bool:
        cap = quota.max_running_per_owner
        return any(s.state == "idle" for s in self.workers) and (cap is None or self._running[owner] < cap)

    def _by_preference(self) -> list[WorkerSlot]:
        return sorted(self.workers, key=lambda s: (s.device != "gpu", s.index))

    def _next_job(self) -> Job | None:
        """The first job of the owner served longest ago (never: first) who may run one more:
        round-robin over the owners who wait, a newcomer at the head of the round."""
        eligible = [owner for owner, queue in self._queues.items()
                    if queue[0].quota.max_running_per_owner is None
                    or self._running[owner] < queue[0].quota.max_running_per_owner]
        if not eligible:
            return None
        owner = min(eligible, key=lambda o: self._served.get(o, -1))
        self._dispatches += 1
        self._served[owner] = self._dispatches
        queue = self._queues[owner]
        job = queue.popleft()
        if not queue:
            del self._queues[owner]
        return job

    def _unqueue(self, job: Job) -> None:
        queue = self._queues.get(job.owner)
        if queue is not None and job in queue:
            queue.remove(job)
            if not queue:
                del self._queues[job.owner]

    def _dispatch(self) -> list[tuple[Job, WorkerSlot, Any]]:
        """Start jobs on free workers; what was started, for :meth:`_launch` outside the lock."""
        started = []
        while self._queues:
            free = [slot for slot in self._by_preference() if slot.state == "idle"]
            if not free:
                break
            job = self._next_job()
            if job is None:
                break
            slot = free[0]
            job.state, job.worker, job.started = "running", slot, time.time()
            job.attempts += 1
            slot.state, slot.job = "busy", job
            slot.status_after = time.monotonic() + STATUS_SECONDS[0]  # progress soon
            self._running[job.owner] += 1
            seconds_left = max(job.deadline - time.monotonic(), 1e-3)
            payload = job.payload
            if job.lease is not None and slot.node_id != self._local_node:
                payload = job.lease.copy_out(payload)  # that worker cannot map the block
            ref = slot.actor.run.remote(job.id, job.task.path, payload, seconds_left,
                                        job.limit_name, job.request_id)
            started.append((job, slot, ref))
        return started

    def _launch(self, started: Iterable[tuple[Job, WorkerSlot, Any]]) -> None:
        for job, slot, ref in started:
            ref.future().add_done_callback(functools.partial(self._finished, job, slot))

    def _release(self, job: Job, slot: WorkerSlot) -> None:
        if slot.job is job:
            slot.job = None
            self._running[job.owner] -= 1
            if self._running[job.owner] <= 0:
                del self._running[job.owner]
                if job.owner not in self._queues:
                    self._served.pop(job.owner, None)  # nothing left: no turn to remember

    def _finished(self, job: Job, slot: WorkerSlot, future: concurrent.futures.Future[Any]) -> None:
        """A job's call to its worker returned (or the worker died)."""
        error = future.exception()
        with self._lock:
            self._release(job, slot)
            if error is None:
                slot.jobs_done += 1
                if slot.state == "busy":
                    slot.state = "idle"
                outcome = future.result()
                if job.lease is not None:
                    outcome = job.lease.answer(outcome)
                if isinstance(outcome, Failure):
                    job._settle("failed", error=outcome.exception())
                else:
                    # the final report, not the last one the status poll happened to see
                    job.last_progress = outcome.progress or job.last_progress
                    job._settle("succeeded", result=outcome)
            elif isinstance(error, RayActorError):
                reason = job.kill_reason or "crash"
                if reason == "crash":
                    self._lost(slot)
                    self._retry_or_fail(job, error)
            else:  # the call itself failed (e.g. an answer that does not unpickle here)
                if slot.state == "busy":
                    slot.state = "idle"
                job._settle("failed", error=WorkerError(f"{type(error).__name__}: {error}"))
            started = self._dispatch()
        self._launch(started)

    def _retry_or_fail(self, job: Job, error: BaseException) -> None:
        """A crashed worker's job runs once more, first in its owner's queue; else 503."""
        if job.done():
            return
        if job.attempts < 2 and time.monotonic() < job.deadline and not self._stopping.is_set():
            log.warning("a worker died running %s; running it again", job.task.path)
            job.state, job.worker = "queued", None
            if job.lease is not None:  # that worker may not be gone yet: leave it the block
                job.payload = job.lease.copy_out(job.payload)
                job.lease.abandon()
                job.lease = None
            self._queues.setdefault(job.owner, collections.deque()).appendleft(job)
            return
        job._settle("failed", error=WorkerLost(
            "The compute worker running this request stopped unexpectedly (a crash or the "
            "system running out of memory); it is being replaced."))

    # --- workers ------------------------------------------------------------------------

    def _kill(self, slot: WorkerSlot, reason: str) -> None:
        """End ``slot``'s process (Ray restarts it); its job's answer is already settled."""
        if slot.job is not None:
            slot.job.kill_reason = reason
        log.warning("ending worker %s (%s)", slot.name, reason,
                    extra={"worker": slot.name, "reason": reason, "pid": slot.pid})
        self._restarting(slot, reason)
        ray.kill(slot.actor, no_restart=False)

    def _lost(self, slot: WorkerSlot) -> None:
        """``slot``'s process died by itself."""
        if slot.state not in ("restarting", "stopped"):
            log.warning("worker %s died; it is being replaced", slot.name,
                        extra={"worker": slot.name, "pid": slot.pid})
            self._restarting(slot, "crash")

    def _restarting(self, slot: WorkerSlot, reason: str) -> None:
        slot.state, slot.dead_pid, slot.process = "restarting", slot.pid, None
        slot.restart_began = time.monotonic()
        slot.restarts += 1
        slot.kills[reason] += 1
        self.kills[reason] += 1
        slot.ready_after = time.monotonic() + READY_RETRY_SECONDS

    def _ask_ready(self, slot: WorkerSlot) -> None:
        slot.ready_pending = True
        slot.actor.ready.remote().future().add_done_callback(functools.partial(self._answered_ready, slot))

    def _answered_ready(self, slot: WorkerSlot, future: concurrent.futures.Future[Any]) -> None:
        error = future.exception()
        with self._lock:
            slot.ready_pending = False
            if slot.state == "stopped":
                return
            slot.ready_after = time.monotonic() + READY_RETRY_SECONDS
            if error is not None:
                if isinstance(error, ActorDiedError) and not self._stopping.is_set():
                    log.error("worker %s cannot be restarted: %s", slot.name, error)
                    slot.state = "stopped"
                return  # still starting: asked again after READY_RETRY_SECONDS
            info = future.result()
            if (info["pid"] == slot.dead_pid and slot.state == "restarting"
                    and time.monotonic() - slot.restart_began < 30):
                return  # the process being replaced answered before it ended
            first = slot.state == "warming"
            slot.info, slot.pid, slot.dead_pid = info, info["pid"], None
            slot.process = self._local_process(slot)
            same_node = sum(1 for s in self.workers if s.node_id == slot.node_id)
            slot.memory_budget = info["machine_memory_bytes"] // (same_node + 1)
            if info["warmup_errors"]:
                log.error("warm-up failed on worker %s: %s", slot.name, info["warmup_errors"])
            if slot.state in ("warming", "restarting"):
                slot.state = "idle"
                log.info("worker %s ready", slot.name, extra={"worker": slot.name, "pid": slot.pid,
                                                                "device": info["devices"].get("jax")})
            if first and not any(s.state == "warming" for s in self.workers):
                self.ready.set()
            started = self._dispatch()
        self._launch(started)

    def _local_process(self, slot: WorkerSlot) -> psutil.Process | None:
        if slot.node_id != self._local_node or slot.pid is None:
            return None
        try:
            return psutil.Process(slot.pid)
        except psutil.Error:
            return None

    def _ask_status(self, slot: WorkerSlot) -> None:
        slot.status_pending = True
        slot.actor.status.remote().future().add_done_callback(functools.partial(self._answered_status, slot))

    def _answered_status(self, slot: WorkerSlot, future: concurrent.futures.Future[Any]) -> None:
        error = future.exception()
        with self._lock:
            slot.status_pending = False
            slot.status_after = time.monotonic() + STATUS_SECONDS[slot.state != "busy"]
            if error is not None:
                if (isinstance(error, RayActorError) and slot.state == "idle"
                        and (slot.process is None or not slot.process.is_running())):
                    self._lost(slot)  # died between jobs
                return
            status = future.result()
            if status["pid"] != slot.pid:
                return
            slot.rss_bytes, slot.gpu_memory_bytes = status["rss_bytes"], status["gpu_memory_bytes"]
            slot.caches = status["caches"]
            if slot.job is not None and slot.job.id in status["progress"]:
                slot.job.last_progress = status["progress"][slot.job.id]

    def _spawn(self, node: cluster.Node) -> None:
        """Start this node's workers: ``cpu_workers`` on CPU, and the GPU share(s)."""
        spec = self.spec
        cpu_count = spec.cpu_workers if spec.cpu_workers is not None else min(node.cpus, MAX_CPU_WORKERS)
        share = 1 / spec.gpu_workers_per_device
        plans = [("cpu", {"num_gpus": 0, "runtime_env": {"env_vars": {
                     "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""}}})] * max(cpu_count, 0)
        gpu_env = {}
        if spec.gpu_workers_per_device > 1:  # each worker may grow to its share of JAX's fraction
            fraction = float(os.environ.get("XLA_CLIENT_MEM_FRACTION", "0.75"))
            gpu_env = {"XLA_CLIENT_MEM_FRACTION": f"{fraction * share:.4f}"}
        plans += [("gpu", {"num_gpus": share, "runtime_env": {"env_vars": gpu_env}})] * (
            node.gpus * spec.gpu_workers_per_device)
        remote = ray.remote(concurrency_groups={CONTROL: 2})(Worker)
        for device, options in plans:
            index = self._indexes[device]
            self._indexes[device] += 1
            actor = remote.options(
                num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=1,
                namespace=cluster.NAMESPACE,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node.id, soft=False),
                **options).remote(spec.worker)
            slot = WorkerSlot(index=index, device=device, node_id=node.id, actor=actor)
            self.workers.append(slot)
            self._ask_ready(slot)
        log.info("node %s: %d CPU and %d GPU workers", node.hostname or node.id[:12], cpu_count,
                 node.gpus * spec.gpu_workers_per_device)

    def _watch_nodes(self) -> None:
        """Workers for nodes that joined; nodes that left take their workers with them."""
        live = {node.id: node for node in cluster.nodes()}
        with self._lock:
            if self._stopping.is_set():
                return
            known = {slot.node_id for slot in self.workers}
            for node_id in known - live.keys():
                for slot in [s for s in self.workers if s.node_id == node_id]:
                    log.warning("node %s left: dropping worker %s", node_id[:12], slot.name)
                    if slot.job is not None:
                        job = slot.job
                        self._release(job, slot)
                        self._retry_or_fail(job, WorkerLost("node lost"))
                    slot.state = "stopped"
                    self.workers.remove(slot)
            for node_id in live.keys() - known:
                self._spawn(live[node_id])
            if not self.workers and not self.ready.is_set():
                self.error = "the cluster has no node with room for a worker"
                self.ready.set()

    # --- the supervisor -------------------------------------------------------------------

    def _supervise(self) -> None:
        try:
            cluster.connect(self.spec.address)
            if self._stopping.is_set():  # stopped while Ray was starting
                return
            self._local_node = cluster.local_node_id()
            self._watch_nodes()
        except Exception as exc:  # noqa: BLE001 - reported by /readyz, /v1/info and every job
            log.exception("the compute workers could not start")
            with self._lock:
                self.error = f"{type(exc).__name__}: {exc}"
                for queue in self._queues.values():
                    for job in queue:
                        job._settle("failed", error=BackendUnavailable(
                            f"The compute workers could not start: {self.error}"))
                self._queues.clear()
            self.ready.set()
            return
        self._nodes_after = time.monotonic() + NODES_SECONDS
        while not self._stopping.wait(POLL_SECONDS):
            try:
                self._tick()
            except Exception:  # noqa: BLE001 - the supervisor must outlive any one bad tick
                log.exception("scheduler tick failed")

    def _tick(self) -> None:
        now = time.monotonic()
        if now >= self._nodes_after:
            self._nodes_after = now + NODES_SECONDS
            self._watch_nodes()
            self.exchange.trim()
        with self._lock:
            for queue in list(self._queues.values()):
                for job in [j for j in queue if now > j.deadline]:
                    self._unqueue(job)
                    job._settle("failed", error=_timeout(job))
            for slot in self.workers:
                job = slot.job
                if job is not None and slot.state == "busy":
                    if now > job.deadline:
                        job._settle("failed", error=_timeout(job))
                        if now > job.deadline + KILL_GRACE_SECONDS:
                            self._kill(slot, "deadline")
                            continue
                    self._check_memory(slot, job)
                if slot.state in ("warming", "restarting"):
                    if not slot.ready_pending and now >= slot.ready_after:
                        self._ask_ready(slot)
                elif slot.state in ("idle", "busy") and not slot.status_pending and now >= slot.status_after:
                    self._ask_status(slot)
            started = self._dispatch()
        self._launch(started)

    def _check_memory(self, slot: WorkerSlot, job: Job) -> None:
        if slot.process is not None:
            try:
                slot.rss_bytes = slot.process.memory_info().rss
            except psutil.Error:
                return  # gone: its call fails and says so
        budget = job.quota.worker_memory_bytes or slot.memory_budget
        if budget is None or slot.rss_bytes is None or slot.rss_bytes <= budget:
            return
        job._settle("failed", error=LimitExceeded(
            f"The computation needed more memory than a compute worker may use: "
            f"{slot.rss_bytes} bytes resident, over the limit of {budget} bytes "
            "(worker_memory_bytes).", limit="worker_memory_bytes", maximum=budget,
            value=slot.rss_bytes))
        self._kill(slot, "memory")


def _timeout(job: Job) -> ComputeTimeout:
    return ComputeTimeout(f"The computation ran past its wall-time limit of {job.wall_seconds:g} s "
                          f"(limits.{job.limit_name}).")


# --- pools shared by the apps of this process ------------------------------------------------

_pools: dict[tuple[Any, ...], Scheduler] = {}
_users: collections.Counter[tuple[Any, ...]] = collections.Counter()
_pools_lock = threading.Lock()
#: Keep a pool whose last app has stopped (tests: every app of the session shares one pool).
LINGER = False


def acquire(spec: PoolSpec) -> Scheduler:
    """The pool for ``spec``, started on first use; :func:`release` when done with it."""
    with _pools_lock:
        scheduler = _pools.get(spec.key)
        if scheduler is None:
            scheduler = _pools[spec.key] = Scheduler(spec)
            scheduler.start()
        _users[spec.key] += 1
        return scheduler


def release(scheduler: Scheduler) -> None:
    """One user less; the last one stops the pool (unless :data:`LINGER`), and with the last
    pool, a local Ray."""
    with _pools_lock:
        key = scheduler.spec.key
        _users[key] -= 1
        if _users[key] > 0 or LINGER or _pools.get(key) is not scheduler:
            return
        del _pools[key], _users[key]
        last = not _pools
    scheduler.stop()
    if last:
        cluster.disconnect()


def shutdown() -> None:
    """Stop every pool and leave the cluster (a local Ray stops with its processes)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
        _users.clear()
    for scheduler in pools:
        scheduler.stop()
    cluster.disconnect()


atexit.register(shutdown)  # before cluster.disconnect (registered earlier, so run later)
