"""Minimize: a sweep of 3 learning rates in one request vs the same 3 runs as 3 requests.

The seed's experiment (SGD on ``x**2`` from x = 1 at rates 0.1, 0.99, 0.001), longer. On jax
the sweep is one compiled program over all rates; the baseline sends one request per rate,
one after the other, on the same server and connection. Both are compiled before timing.
"""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np

from bench.harness import alternate, ratio_rows, server

RATES = [0.1, 0.99, 0.001]


def _request(rates: list[float], steps: int, backend: str) -> dict[str, Any]:
    return {"expression": "x**2", "start": {"x": 1.0}, "optimizer": "sgd", "learning_rate": rates,
            "steps": steps, "backend": backend}


def run(quick: bool) -> dict[str, Any]:
    srv = server(quick)
    steps = 50 if quick else 500
    backends = ["jax"] if quick else ["jax", "tensorflow"]
    rows: list[dict[str, Any]] = []
    with httpx.Client(base_url=srv.url, timeout=300) as client:

        def post(body: dict[str, Any]) -> list[dict[str, Any]]:
            response = client.post("/v1/minimize", json=body)
            response.raise_for_status()
            return response.json()["runs"]

        for backend in backends:
            # The answer first: SGD on x**2 is x_k = x_0 (1 - 2 lr)^k, the same either way.
            sweep_runs = post(_request(RATES, steps, backend))
            for rate, run_ in zip(RATES, sweep_runs, strict=True):
                (single,) = post(_request([rate], steps, backend))
                np.testing.assert_allclose([run_["x"]["x"], single["x"]["x"]],
                                           (1 - 2 * rate) ** steps, rtol=1e-9, atol=1e-300)

            stats = alternate({
                "3 requests, one rate each": lambda b=backend: [post(_request([r], steps, b)) for r in RATES],
                "1 request, 3 rates": lambda b=backend: post(_request(RATES, steps, b)),
            }, repeats=3 if quick else 7)
            rows += ratio_rows(stats, "3 requests, one rate each", backend=backend, steps=steps)
    return {
        "title": "Minimize: learning-rate sweep in one request vs sequential requests",
        "rows": rows,
        "notes": [f"SGD on x**2 from x=1, rates {RATES}, {steps} steps, full history returned; "
                  f"server {srv.url}; final x checked against (1 - 2 lr)^steps first",
                  "ratio < 1: the sweep is faster than the three requests"],
    }
