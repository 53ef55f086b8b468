"""A compute worker: the long-lived process (a Ray actor) in which tasks run.

It sets itself up once (its allocator's reuse of freed memory, float64 JAX and pyhf's backend,
cache sizes, TensorFlow when asked, every domain's warm-up) and then runs one job at a time,
each under a :class:`progress.Tracker` with the job's own deadline, keeping its compiled
functions and built models warm for the next.
Everything a task raises comes back as a :class:`~labcrunch_service.compute.tasks.Failure`.

A second, small pool of threads ("control") answers while a job runs: the job's progress, the
process's memory, its caches' hit counts (the scheduler polls these for /v1/info and /metrics).
This module runs in the worker; the HTTP process only names the class.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

import psutil
import ray

from labcrunch_service import backends, cache, progress
from labcrunch_service.compute import exchange
from labcrunch_service.compute.tasks import Failure, Timed, resolve
from labcrunch_service.errors import LabcrunchError
from labcrunch_service.http.context import request_id_var
from labcrunch_service.malloc import keep_freed_memory
from labcrunch_service.settings import Settings

log = logging.getLogger(__name__)

CONTROL = "control"  # the concurrency group of the questions asked while a job runs


@dataclass(frozen=True, eq=False)
class WorkerSpec:
    """What every worker of a pool is started with: the service settings (API keys removed:
    a worker never needs them) and the warm-up task of each domain."""

    settings: Settings
    warmups: tuple[str, ...]

    @property
    def key(self) -> tuple[Any, ...]:
        """What a worker's state depends on: its warm-up, its caches' sizes, its allocator.
        Limits, keys, quotas and logging do not (limits travel with each task), nor whether
        TensorFlow is imported at start (it is on first use anyway)."""
        s = self.settings
        return (s.warmup, s.compile_cache_size, s.limits.model_cache_size, s.retain_freed_bytes,
                self.warmups if s.warmup else ())


class Worker:
    """The actor's class (made remote by the scheduler, which sets its resources)."""

    def __init__(self, spec: WorkerSpec) -> None:
        from labcrunch_service.logs import configure_logging

        settings = spec.settings
        configure_logging(settings.log_level, settings.log_json)  # into Ray's log file of this worker
        self.pid = os.getpid()
        self.started = time.time()
        self.jobs: dict[str, progress.Tracker] = {}
        self.warmup_errors: dict[str, str] = {}
        keep_freed_memory(settings.retain_freed_bytes)
        backends.configure()
        cache.configure(settings)
        if settings.load_tensorflow:
            backends.tensorflow_available()
        if settings.warmup:
            for path in spec.warmups:
                try:
                    resolve(path)(settings)
                except Exception as exc:  # a failed warm-up degrades one domain, not the worker
                    log.exception("warm-up of %s failed", path)
                    self.warmup_errors[path] = f"{type(exc).__name__}: {exc}"

    @ray.method(concurrency_group=CONTROL)
    def ready(self) -> dict[str, Any]:
        """Who this worker is, once warm: process, node, devices, backends as it sees them."""
        return {"pid": self.pid, "started": self.started, "hostname": socket.gethostname(),
                "node_id": ray.get_runtime_context().get_node_id(),
                "devices": backends.loaded_devices(), "backends": backends.describe(),
                "warmup_errors": self.warmup_errors,
                "machine_memory_bytes": psutil.virtual_memory().total}

    def run(self, job_id: str, path: str, payload: Any, seconds_left: float, limit_name: str,
            request_id: str | None) -> Timed[Any] | Failure:
        """Run the task ``path`` on ``payload`` ((args, kwargs), or them packed into a block of
        shared memory: :mod:`exchange`) with ``seconds_left`` of wall time."""
        tracker = progress.Tracker(time.monotonic() + seconds_left, limit_name=limit_name)
        self.jobs[job_id] = tracker
        token = request_id_var.set(request_id)  # the worker's log lines carry the request's id
        try:
            fn = resolve(path)
            args, kwargs = exchange.unpack(payload)
            with progress.tracking(tracker):
                start = time.perf_counter()
                result = fn(*args, **kwargs)
                timed = Timed(result, (time.perf_counter() - start) * 1e3, backends.loaded_devices(),
                              tracker.snapshot() if tracker.unit else None)
            return exchange.pack_answer(payload, timed)
        except Exception as exc:
            if not isinstance(exc, LabcrunchError):
                log.exception("task %s failed", path)
            return Failure.of(exc)
        finally:
            request_id_var.reset(token)
            del self.jobs[job_id]

    @ray.method(concurrency_group=CONTROL)
    def status(self) -> dict[str, Any]:
        """Memory, the running job's progress, cache counters; answered while a job runs."""
        return {"pid": self.pid, "rss_bytes": psutil.Process().memory_info().rss,
                "gpu_memory_bytes": _gpu_memory_bytes(),
                "progress": {job: tracker.snapshot() for job, tracker in list(self.jobs.items())},
                "caches": cache.stats()}

    @ray.method(concurrency_group=CONTROL)
    def call(self, path: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run a task at once, beside any job (reading or setting state of this process)."""
        try:
            return resolve(path)(*args, **kwargs)
        except Exception as exc:
            return Failure.of(exc)


def _gpu_memory_bytes() -> int | None:
    """Bytes JAX holds on this worker's GPU, when it computes on one."""
    if not backends.loaded_devices().get("jax", "cpu").startswith("gpu"):
        return None
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("bytes_in_use")
