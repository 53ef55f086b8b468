"""Gradient: the cost of the HTTP layer and of compiling, and a 10^6-point batch vs local JAX.

1. Round trip of a cached scalar gradient vs ``GET /livez`` on the same server, same keep-alive
   connection, alternating (target: gradient p50 at most 3x livez p50, the computation running
   in a worker process; 1.95x when it ran in a thread of the HTTP process).
2. First request of a never-seen expression (parse + trace + compile) vs the same request again.
3. A batch of points through the service in binary (.npz both ways) vs a local
   ``jit(vmap(value_and_grad))`` call in this process on the same points, transfers to numpy
   included (target: service time at most 2x local, i.e. at least half the throughput). The
   service's row posts an .npz made once and reads the answer with the client's transport
   (``labcrunch._http``); beside it the same through httpx's own transport, the whole
   ``labcrunch.Client.gradient`` call (which also writes the .npz), the same service with the C
   library's allocator defaults (``retain_freed_bytes=0``), the same with the arrays through
   Ray's object store instead of the blocks of shared memory (``shared_memory_bytes=0``), and
   where the service's time went (its ``Server-Timing`` entries).
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable
from typing import Any

import httpx
import jax
import jax.numpy as jnp
import numpy as np

from bench.harness import alternate, server, server_timing, start_server
from labcrunch import Client
from labcrunch._arrays import from_npz
from labcrunch._http import Transport
from labcrunch_service import backends

backends.configure()  # float64, as the service computes by default

SCALAR = {"expression": "(x - 1)**2", "at": {"x": 3.0}}
BATCH_EXPRESSION = "sin(x) * y**2 + exp(-x / 3)"
NPZ = "application/x-npz"


def batch_function(x: jax.Array, y: jax.Array) -> jax.Array:
    """BATCH_EXPRESSION written directly in JAX: the local baseline."""
    return jnp.sin(x) * y**2 + jnp.exp(-x / 3)


def check_scalar(answer: dict[str, Any], x: float, shift: float, with_cos: bool) -> None:
    """The service's value and derivative of ``(x - shift)**2`` (times ``cos(x)`` when
    ``with_cos``) at ``x``, against the closed forms."""
    square, dsquare = (x - shift) ** 2, 2 * (x - shift)
    if with_cos:
        value, derivative = square * np.cos(x), dsquare * np.cos(x) - square * np.sin(x)
    else:
        value, derivative = square, dsquare
    np.testing.assert_allclose([answer["value"], answer["gradient"]["x"]], [value, derivative],
                               rtol=1e-12, atol=1e-15)


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def run(quick: bool) -> dict[str, Any]:
    srv = server(quick)
    rows: list[dict[str, Any]] = []
    notes = [f"server: `labcrunch serve` on {srv.url} (this machine, loopback, keep-alive)"]
    with httpx.Client(base_url=srv.url, timeout=300) as client:

        def livez() -> None:
            client.get("/livez").raise_for_status()

        def cached_gradient() -> None:
            client.post("/v1/gradient", json=SCALAR).raise_for_status()

        # 1. HTTP round trip: cached scalar gradient vs /livez. The answer first:
        # (x - 1)**2 at x = 3 is 4, and so is its derivative 2 (x - 1).
        response = client.post("/v1/gradient", json=SCALAR)
        response.raise_for_status()
        check_scalar(response.json(), SCALAR["at"]["x"], 1.0, with_cos=False)
        stats = alternate({"GET /livez": livez, "POST /v1/gradient (cached scalar)": cached_gradient},
                          repeats=20 if quick else 400, warmup=3)
        base = stats["GET /livez"]["median_s"]
        for name, s in stats.items():
            rows.append({"case": name, "median_ms": s["median_s"] * 1e3, "p99_ms": s["p99_s"] * 1e3,
                         "spread": s["spread"], "n": s["n"], "ratio": s["median_s"] / base})
        notes.append("round trip: ratio = p50 / p50 of GET /livez (target <= 3 with the hop to a "
                     "worker process); the gradient checked against the closed form first")

        # 2. First request of a new expression (compile) vs the same request, cached.
        fresh = itertools.count(1)

        first, again = [], []
        for _ in range(2 if quick else 8):
            shift = f"{next(fresh) / 7:.6f}"
            body = {"expression": f"(x - {shift})**2 * cos(x)", "at": {"x": 0.5}}
            first.append(client.post("/v1/gradient", json=body))
            again.append(client.post("/v1/gradient", json=body))
            for response in (first[-1], again[-1]):  # timed as sent; checked before it counts
                response.raise_for_status()
                check_scalar(response.json(), 0.5, float(shift), with_cos=True)
        cold = np.median([r.elapsed.total_seconds() for r in first])
        warm = np.median([r.elapsed.total_seconds() for r in again])
        rows.append({"case": "first request, new expression (compile)", "median_ms": cold * 1e3,
                     "n": len(first), "ratio": cold / warm})
        rows.append({"case": "same request again (cached)", "median_ms": warm * 1e3, "n": len(again),
                     "ratio": 1.0})
        notes.append("compile: ratio = first / cached request of the same new expression; "
                     "every answer checked against the closed form")

        # 3. A batch: service with .npz both ways vs local jit(vmap(value_and_grad)).
        n = 10_000 if quick else 1_000_000
        rng = np.random.default_rng(0)
        x, y = rng.uniform(-3, 3, n), rng.uniform(-3, 3, n)
        body = _npz(x=x, y=y)
        local = jax.jit(jax.vmap(jax.value_and_grad(batch_function, argnums=(0, 1))))

        def run_local() -> tuple[np.ndarray, np.ndarray]:
            value, (dx, dy) = local(jnp.asarray(x, dtype=jnp.float64), jnp.asarray(y, dtype=jnp.float64))
            return np.asarray(value), np.stack([np.asarray(dx), np.asarray(dy)], axis=-1)

        service_case = f"service, .npz both ways, {n:,} points"
        timings: list[dict[str, float]] = []  # the Server-Timing of each answer of `fast`

        def service_call(on: httpx.Client) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
            def run_service() -> tuple[np.ndarray, np.ndarray]:
                response = on.post("/v1/gradient", content=body, params={"expression": BATCH_EXPRESSION},
                                   headers={"Content-Type": NPZ, "Accept": NPZ})
                response.raise_for_status()
                if on is fast:
                    timings.append(server_timing(response))
                arrays = from_npz(response.content)  # the client's decoder: views, no copies
                return arrays["value"], arrays["gradient"]

            return run_service

        def client_call() -> tuple[np.ndarray, np.ndarray]:
            result = lc.gradient(BATCH_EXPRESSION, at={"x": x, "y": y})
            return result.value, result.gradient_matrix

        # The same service with the C library's allocator defaults (retain_freed_bytes = 0):
        # what keeping freed memory for reuse saves.
        # And with the arrays through Ray's object store (shared_memory_bytes = 0): what the
        # blocks of shared memory save.
        plain = start_server({"LABCRUNCH_RETAIN_FREED_BYTES": "0", "LABCRUNCH_WARMUP": "false"})
        store = start_server({"LABCRUNCH_SHARED_MEMORY_BYTES": "0", "LABCRUNCH_WARMUP": "false"})
        try:
            with (httpx.Client(base_url=srv.url, timeout=300, transport=Transport()) as fast,
                  httpx.Client(base_url=plain.url, timeout=300, transport=Transport()) as plain_client,
                  httpx.Client(base_url=store.url, timeout=300, transport=Transport()) as store_client,
                  Client(srv.url, timeout=300, max_retries=0) as lc):
                candidates = {service_case: service_call(fast),
                              "the same through httpx's own transport": service_call(client),
                              "labcrunch.Client.gradient (writes the .npz too)": client_call,
                              "the same as the service's row, allocator defaults "
                              "(retain_freed_bytes=0)": service_call(plain_client),
                              "the same as the service's row, arrays through Ray's object store "
                              "(shared_memory_bytes=0)": service_call(store_client)}
                local_value, local_grad = run_local()
                for run_service in candidates.values():
                    value, grad = run_service()
                    np.testing.assert_allclose(value, local_value, rtol=1e-12, atol=1e-12)
                    np.testing.assert_allclose(grad, local_grad, rtol=1e-12, atol=1e-12)
                timings.clear()
                stats = alternate({"local jit(vmap(value_and_grad))": run_local, **candidates},
                                  repeats=2 if quick else 9)
        finally:
            plain.stop()
            store.stop()
        base = stats["local jit(vmap(value_and_grad))"]["median_s"]
        for name, s in stats.items():
            rows.append({"case": name, "median_ms": s["median_s"] * 1e3, "spread": s["spread"],
                         "n": s["n"], "ratio": s["median_s"] / base,
                         "points_per_s": n / s["median_s"]})
        notes.append(f"batch: `{BATCH_EXPRESSION}` at {n:,} float64 points; ratio = time / local "
                     "time (target <= 2); answers checked equal to the local ones first; the "
                     "service's row posts an .npz made once, read with the client's transport "
                     "(labcrunch._http: http.client); the allocator-defaults and object-store rows "
                     "are two more servers (no warm-up) with LABCRUNCH_RETAIN_FREED_BYTES=0 and "
                     "LABCRUNCH_SHARED_MEMORY_BYTES=0")

        # Where the service's time went, from its Server-Timing headers (medians of the runs):
        # the task in the worker, the hop to the worker and back, the rest of the server (reading
        # the body, encoding the answer's start), and what is left: the transfers and the client.
        total = stats[service_case]["median_s"] * 1e3

        def part(name: str) -> float:
            return float(np.median([t[name] for t in timings]))

        parts = {"compute (the task in the worker)": part("compute"),
                 "worker hop (worker round trip - compute)": part("worker") - part("compute"),
                 "rest of the server (app - worker - queue)": part("app") - part("worker") - part("queue"),
                 "queue": part("queue"),
                 "transfers and client (total - app)": total - part("app")}
        for name, ms in parts.items():
            rows.append({"case": f"  of the service's time: {name}", "median_ms": ms,
                         "ratio": ms / (base * 1e3)})
        notes.append("breakdown: medians of the service's Server-Timing entries over the timed "
                     "runs; ratio = share of the local time")
    return {"title": "Gradient: HTTP overhead, compile latency, batch throughput", "rows": rows,
            "notes": notes}
