"""Workers: what the compute worker processes buy, and the start-up they cost.

1. Fairness: owner A floods (closed-loop clients keep A's queue full: every worker busy and 16
   of A's requests waiting), owner B sends small requests one at a time; B's p50/p99 against B
   alone on the same server. Without API keys an owner is a client address: A connects from
   127.0.0.1, B from 127.0.0.2 (both loopback).
2. Throughput of a CPU-bound mix (programs' gradients: the interpreter runs each point in
   Python before the compiled part) with 1 vs 2 CPU workers: two servers, the same closed-loop
   clients. In one process the GIL serialises such work; two workers run two at once.
3. Start-up of `labcrunch serve`: time to /livez 200 (the HTTP process) and to /readyz 200
   (every worker warm), for each server this run started.

The worker hop itself (cached scalar gradient vs /livez on one server) is in bench/gradient.py.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from typing import Any

import httpx

from bench.harness import Server, percentile_ms, server, start_server

SMALL = {"expression": "(x - 1)**2", "at": {"x": 3.0}}  # answer: 4, derivative 4
SEED_PROGRAM = ("def f(x):\n    if x > 0:\n        for i in range(40):\n            x += sqrt(x)\n"
                "        return x / 10.\n    return f(f(x ** 2)) + 1\n")


def _long_request(quick: bool) -> dict[str, Any]:
    """A's request: a fractal that takes a few hundred milliseconds here."""
    side = 160 if quick else 480
    return {"method": "GET", "url": "/v1/fractal/mandelbrot.png",
            "params": {"width": side, "height": side, "max_iter": 3000, "center_x": -0.745,
                       "center_y": 0.11, "scale": 0.02}}


def _check_small(response: httpx.Response) -> None:
    response.raise_for_status()
    body = response.json()
    assert body["value"] == 4.0 and body["gradient"] == {"x": 4.0}, body


async def _b_requests(url: str, count: int) -> list[float]:
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    times = []
    async with httpx.AsyncClient(base_url=url, transport=transport, timeout=120) as client:
        for _ in range(count):
            start = time.perf_counter()
            response = await client.post("/v1/gradient", json=SMALL)
            times.append(time.perf_counter() - start)
            _check_small(response)
    return times


async def _on_every_worker(url: str, requests: list[dict[str, Any]], workers: int) -> None:
    """Each request ``workers`` times at once, so that every worker has compiled it."""
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        for request in requests:
            answers = await asyncio.gather(*(client.request(**request) for _ in range(workers)))
            for response in answers:
                response.raise_for_status()


async def _a_flood(url: str, request: dict[str, Any], clients: int, stop: asyncio.Event,
                   statuses: Counter, compute_ms: list[float]) -> None:
    async def one() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=300,
                                     limits=httpx.Limits(max_connections=1)) as client:
            while not stop.is_set():
                response = await client.request(**request)
                statuses[response.status_code] += 1
                if response.status_code == 200:
                    compute_ms.append(float(response.headers["X-Elapsed-Ms"]))
                else:  # 429: A's queue is full (its own quota); try again shortly
                    await asyncio.sleep(0.05)

    await asyncio.gather(*(one() for _ in range(clients)))


async def _fairness(srv: Server, quick: bool, workers: int) -> dict[str, Any]:
    count = 5 if quick else 60
    request = _long_request(quick)
    await _on_every_worker(srv.url, [request], workers)
    alone = await _b_requests(srv.url, count)
    stop, statuses, compute_ms = asyncio.Event(), Counter(), []
    flood = asyncio.create_task(_a_flood(srv.url, request, workers + 16, stop, statuses, compute_ms))
    await asyncio.sleep(1.0 if quick else 5.0)  # A's queue fills
    flooded = await _b_requests(srv.url, count)
    stop.set()
    await flood
    return {"alone": alone, "flooded": flooded, "a_statuses": dict(statuses),
            "a_job_s": statistics.median(compute_ms) / 1e3 if compute_ms else float("nan")}


# CPU-bound and Python-bound: a program runs point by point in the interpreter (numpy) to find
# its paths before the compiled part; one process does one at a time (the GIL), two workers two.
THROUGHPUT_MIX = [
    {"method": "POST", "url": "/v1/gradient",
     "json": {"program": SEED_PROGRAM, "function": "f", "at": {"x": [3.4, 0.5, 2.0, 7.1] * 16}}},
    {"method": "POST", "url": "/v1/gradient",
     "json": {"program": SEED_PROGRAM.replace("range(40)", "range(60)"), "function": "f",
              "at": {"x": [1.5, 0.25, 9.0, 4.2] * 16}}},
]


async def _throughput(url: str, seconds: float, clients: int, workers: int) -> tuple[float, Counter]:
    await _on_every_worker(url, THROUGHPUT_MIX, workers)
    statuses: Counter = Counter()
    deadline = time.perf_counter() + seconds

    async def one(offset: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=300) as client:
            i = offset
            while time.perf_counter() < deadline:
                response = await client.request(**THROUGHPUT_MIX[i % len(THROUGHPUT_MIX)])
                statuses[response.status_code] += 1
                i += 1

    start = time.perf_counter()
    await asyncio.gather(*(one(k) for k in range(clients)))
    return statuses[200] / (time.perf_counter() - start), statuses


def run(quick: bool) -> dict[str, Any]:
    srv = server(quick)
    workers = httpx.get(f"{srv.url}/v1/info", timeout=30).json()["compute"]["max_concurrent_jobs"]
    with httpx.Client(base_url=srv.url, timeout=120) as client:
        _check_small(client.post("/v1/gradient", json=SMALL))  # compiled before it is timed
    fair = asyncio.run(_fairness(srv, quick, workers))
    rows: list[dict[str, Any]] = []
    for case, times in (("B alone", fair["alone"]), ("B while A floods", fair["flooded"])):
        rows.append({"benchmark": "fairness", "case": case, "p50_ms": percentile_ms(times, 50),
                     "p99_ms": percentile_ms(times, 99), "n": len(times)})
    rows[-1]["ratio_p50"] = rows[-1]["p50_ms"] / rows[-2]["p50_ms"]
    notes = [f"server: `labcrunch serve` on {srv.url}, {workers} CPU workers",
             f"fairness: A's request (a fractal, compiled on every worker first) computes for "
             f"{fair['a_job_s'] * 1e3:.0f} ms in the flood; A got {fair['a_statuses']} (429: its "
             "own queue of 16 is full). First come, "
             f"first served, B would wait behind ~16 of A's requests: ~"
             f"{16 * fair['a_job_s'] / max(workers, 1) * 1e3:.0f} ms"]

    servers = {workers: srv}
    if not quick:  # a second server with one worker (tens of seconds to start)
        one = start_server({"LABCRUNCH_CPU_WORKERS": "1"})
        servers[1] = one
    seconds, clients = (1.0, 2) if quick else (20.0, 4)
    rates = {}
    for count, running in sorted(servers.items()):
        rate, statuses = asyncio.run(_throughput(running.url, seconds, clients, count))
        rates[count] = rate
        rows.append({"benchmark": "throughput", "case": f"{count} CPU worker(s), {clients} clients",
                     "req_per_s": rate, "statuses": dict(statuses)})
    if len(rates) == 2:
        rows[-1]["ratio"] = rates[max(rates)] / rates[min(rates)]
    notes.append("throughput: two programs' gradients (64 points each, interpreted point by "
                 "point), alternating; closed-loop clients; ratio = 2 workers / 1")
    for count, running in sorted(servers.items()):
        rows.append({"benchmark": "start-up", "case": f"labcrunch serve, {count} CPU worker(s)"
                     + (", no warm-up" if quick else ", warm-up"),
                     "livez_s": running.livez_s, "readyz_s": running.startup_s})
    if not quick:
        servers[1].stop()
    return {"title": "Workers: fairness between owners, throughput per worker, start-up",
            "rows": rows, "notes": notes}
