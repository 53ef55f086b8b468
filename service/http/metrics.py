"""``GET /metrics``: Prometheus text format, protected by the API keys like ``/v1``.

The HTTP side counts requests by route template, method and status, with a latency histogram
(:class:`MetricsMiddleware`); the compute side is read from the scheduler when scraped
(:class:`ComputeCollector`): queue length per owner, jobs running per worker and device, worker
restarts and kills by reason, each worker's resident memory (and GPU memory), and the hits and
misses of every compiled-function and model cache as the workers last reported them; and the
stored jobs by status (:class:`JobsCollector`).

Each app has its own registry, so several apps in one process (tests) never clash.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labcrunch_service.compute import Runner
from labcrunch_service.compute.scheduler import KILL_REASONS

if TYPE_CHECKING:
    from labcrunch_service.jobs.manager import JobManager

#: Request latency buckets (s): a cached scalar gradient takes ~1 ms, a long job a minute.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   30.0, 60.0, 120.0)
UNMATCHED = "(unmatched)"  # requests no route took (404, or refused before routing): no raw paths

router = APIRouter()


class Metrics:
    """One app's registry: the request metrics and the compute collector."""

    def __init__(self, runner: Runner, jobs: JobManager) -> None:
        self.registry = CollectorRegistry(auto_describe=False)  # collect only when scraped
        self.requests = Counter("labcrunch_http_requests", "HTTP requests answered.",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("labcrunch_http_request_duration_seconds",
                                 "Time from request to the end of its answer.", ["route", "method"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(ComputeCollector(runner))
        self.registry.register(JobsCollector(jobs))

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)


class MetricsMiddleware:
    """Counts every HTTP request under its route's template (``/v1/fractal/{kind}.png``)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            self.metrics.observe(route, scope["method"], status, time.perf_counter() - start)


class ComputeCollector(Collector):
    """The scheduler's state, read at scrape time."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def collect(self) -> Iterator[Metric]:
        snapshot = self.runner.scheduler.snapshot()
        queued = GaugeMetricFamily("labcrunch_queued_jobs", "Jobs waiting for a worker, per owner.",
                                   labels=["owner"])
        for owner, count in sorted(snapshot["queued"].items()):
            queued.add_metric([owner], count)
        yield queued
        per_worker = ["worker", "node", "device"]
        running = GaugeMetricFamily("labcrunch_running_jobs", "Jobs running, per worker (0 or 1).",
                                    labels=per_worker)
        state = GaugeMetricFamily("labcrunch_worker_state", "1 for the state each worker is in.",
                                  labels=[*per_worker, "state"])
        done = CounterMetricFamily("labcrunch_worker_jobs", "Jobs a worker finished.", labels=per_worker)
        restarts = CounterMetricFamily("labcrunch_worker_restarts",
                                       "Times a worker's process was ended or died, and replaced.",
                                       labels=per_worker)
        rss = GaugeMetricFamily("labcrunch_worker_resident_memory_bytes",
                                "Resident memory of a worker's process.", labels=per_worker)
        gpu = GaugeMetricFamily("labcrunch_worker_gpu_memory_bytes",
                                "GPU memory JAX holds in a worker (GPU workers).", labels=per_worker)
        hits = CounterMetricFamily("labcrunch_cache_hits", "Compiled-function and model cache hits "
                                   "in a worker's process (since it started).",
                                   labels=[*per_worker, "cache"])
        misses = CounterMetricFamily("labcrunch_cache_misses", "Cache misses (each one a build: "
                                     "a compile or a model), since the worker started.",
                                     labels=[*per_worker, "cache"])
        for worker in snapshot["workers"]:
            labels = [worker["id"], worker["node"], worker["device"]]
            running.add_metric(labels, 1 if worker["state"] == "busy" else 0)
            for name in ("warming", "idle", "busy", "restarting"):
                state.add_metric([*labels, name], 1 if worker["state"] == name else 0)
            done.add_metric(labels, worker["jobs_done"])
            restarts.add_metric(labels, worker["restarts"])
            if worker["rss_bytes"] is not None:
                rss.add_metric(labels, worker["rss_bytes"])
            if worker["gpu_memory_bytes"] is not None:
                gpu.add_metric(labels, worker["gpu_memory_bytes"])
            for entry in worker["caches"]:
                hits.add_metric([*labels, entry["name"]], entry["hits"])
                misses.add_metric([*labels, entry["name"]], entry["misses"])
        yield from (running, state, done, restarts, rss, gpu, hits, misses)
        kills = CounterMetricFamily("labcrunch_worker_kills", "Worker processes ended or lost, by "
                                    "reason: deadline (wall time), memory, cancel, crash.",
                                    labels=["reason"])
        for reason in KILL_REASONS:
            kills.add_metric([reason], snapshot["kills"].get(reason, 0))
        yield kills


class JobsCollector(Collector):
    """The stored jobs (``Prefer: respond-async``) by status, as the job store last counted them."""

    def __init__(self, jobs: JobManager) -> None:
        self.jobs = jobs

    def collect(self) -> Iterator[Metric]:
        stored = GaugeMetricFamily("labcrunch_jobs", "Stored jobs by status (queued, running, "
                                   "succeeded, failed, cancelled).", labels=["status"])
        for status, count in sorted(self.jobs.jobs_by_status().items()):
            stored.add_metric([status], count)
        yield stored


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus text format (``scrape_configs`` with the API key as a bearer token)."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
