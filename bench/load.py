"""Load: N concurrent clients on a mix of endpoints against a real server, for a bounded time.

Each client is its own keep-alive connection on loopback and sends the next request of the mix
as soon as the previous one answers (a closed loop, no think time). The mix is ``GET /livez``
plus the small, checked requests of bench/gpu_smoke.py for the routes this build has. Retries
are off: a 429 (compute queue full) is counted, not hidden. Server memory is its RSS after
warm-up and after each load level.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import httpx

from bench.gpu_smoke import smoke_requests
from bench.harness import percentile_ms, server

# Cheap requests of the mix; the rest of the smoke set (scans, limits) is minutes of work at load.
MIX_ROUTES = ("/v1/gradient", "/v1/minimize", "/v1/fit/line", "/v1/pyhf/fit", "/v1/fractal/{kind}.png")


def _check_livez(response: httpx.Response) -> None:
    assert response.json()["status"] == "ok", response.text


def request_mix(routes: set[str]) -> list[tuple[str, dict[str, Any], Callable[[httpx.Response], None]]]:
    """(label, httpx request arguments, check of the answer) for /livez and each cheap route
    the server has."""
    mix = [("GET /livez", {"method": "GET", "url": "/livez"}, _check_livez)]
    for smoke in smoke_requests():
        body = smoke.json or {}
        if (smoke.route in MIX_ROUTES and smoke.route in routes
                and body.get("backend") != "tensorflow"  # jax: TF costs seconds to load
                and body.get("method") != "gradient_descent"):  # one fit: the closed form
            mix.append((f"{smoke.method} {smoke.route}",
                        {"method": smoke.method, "url": smoke.url, "json": smoke.json, "params": smoke.params},
                        smoke.check))
    return mix


async def _client(base_url: str, mix: list, offset: int, deadline: float,
                  samples: dict[str, list[float]], statuses: Counter) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=120.0,
                                 limits=httpx.Limits(max_connections=1)) as client:
        i = offset
        while time.perf_counter() < deadline:
            label, request, _check = mix[i % len(mix)]
            i += 1
            start = time.perf_counter()
            try:
                response = await client.request(**request)
                status = str(response.status_code)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            elapsed = time.perf_counter() - start
            statuses[status] += 1
            if status == "200":
                samples[label].append(elapsed)


async def _load(base_url: str, mix: list, clients: int, seconds: float):
    samples: dict[str, list[float]] = defaultdict(list)
    statuses: Counter = Counter()
    start = time.perf_counter()
    await asyncio.gather(*(_client(base_url, mix, k, start + seconds, samples, statuses)
                           for k in range(clients)))
    return samples, statuses, time.perf_counter() - start


def run(quick: bool) -> dict[str, Any]:
    srv = server(quick)
    routes = set(httpx.get(f"{srv.url}/openapi.json", timeout=30).json()["paths"])
    compute = httpx.get(f"{srv.url}/v1/info", timeout=30).json()["compute"]
    mix = request_mix(routes)
    # Each request once before the load: it compiles its path, and its answer is checked (the
    # closed forms of bench/gpu_smoke.py) so the load times right answers.
    with httpx.Client(base_url=srv.url, timeout=300) as warm:
        for _label, request, check in mix:
            response = warm.request(**request)
            response.raise_for_status()
            check(response)
    # Every client here is one owner (one address): its workers and queue places are the capacity.
    capacity = compute["max_concurrent_jobs"] + compute["max_queued_per_owner"]
    levels = [(4, 1.0)] if quick else [(4, 20.0), (2 * capacity, 20.0)]
    rows = []
    for clients, seconds in levels:
        rss_before = srv.rss_mb()
        samples, statuses, wall = asyncio.run(_load(srv.url, mix, clients, seconds))
        every = [t for ts in samples.values() for t in ts]
        total = sum(statuses.values())
        rows.append({
            "clients": clients, "endpoint": "all", "requests": total, "req_per_s": total / wall,
            "ok_per_s": len(every) / wall,
            "p50_ms": percentile_ms(every, 50) if every else float("nan"),
            "p99_ms": percentile_ms(every, 99) if every else float("nan"),
            "status_429": statuses.get("429", 0),
            "errors": {k: v for k, v in sorted(statuses.items()) if k not in ("200", "429")},
            "rss_before_mb": rss_before, "rss_after_mb": srv.rss_mb(),
        })
        for label, ts in sorted(samples.items()):
            rows.append({"clients": clients, "endpoint": label, "requests": len(ts),
                         "ok_per_s": len(ts) / wall, "p50_ms": percentile_ms(ts, 50),
                         "p99_ms": percentile_ms(ts, 99)})
    return {
        "title": "Load: concurrent closed-loop clients on loopback, mixed endpoints",
        "rows": rows,
        "notes": [
            f"server: `labcrunch serve` on {srv.url}, started in {srv.startup_s:.1f} s; "
            f"{compute['max_concurrent_jobs']} workers, max_queued_per_owner="
            f"{compute['max_queued_per_owner']}: beyond {capacity} compute requests of one owner "
            "in flight it answers 429",
            "each request's answer checked once before the load; latencies over 200 answers only; status_429 counts refusals (no retries); errors: "
            "any other status or transport error",
            "client and server share this machine's cores",
        ],
    }
