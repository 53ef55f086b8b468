"""Line fit: 10^6 points by least squares through the service vs ``numpy.polyfit`` in-process.

The service is timed end to end from this process (upload, parse, fit, answer), once with the
points as a JSON body and once as a binary ``.npy`` body; the bodies are encoded once, before
timing, and the time to encode them is reported on its own. The baseline is
``numpy.polyfit(x, y, 1, cov=True)`` on the same arrays, here.
"""

from __future__ import annotations

import io
import json
import time
from typing import Any

import httpx
import numpy as np

from bench.harness import alternate, ratio_rows, server

TRUE_M, TRUE_Q = 2.5, -1.2


def run(quick: bool) -> dict[str, Any]:
    srv = server(quick)
    n = 10_000 if quick else 1_000_000
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 100.0, n)
    y = TRUE_M * x + TRUE_Q + rng.normal(0.0, 5.0, n)

    start = time.perf_counter()
    json_body = json.dumps({"x": x.tolist(), "y": y.tolist(), "method": "least_squares"}).encode()
    json_encode_s = time.perf_counter() - start
    start = time.perf_counter()
    buf = io.BytesIO()
    np.save(buf, np.column_stack([x, y]))
    npy_body = buf.getvalue()
    npy_encode_s = time.perf_counter() - start

    with httpx.Client(base_url=srv.url, timeout=300) as client:

        def fit_json() -> dict[str, Any]:
            response = client.post("/v1/fit/line", content=json_body,
                                   headers={"Content-Type": "application/json"})
            response.raise_for_status()
            return response.json()

        def fit_npy() -> dict[str, Any]:
            response = client.post("/v1/fit/line", content=npy_body, params={"method": "least_squares"},
                                   headers={"Content-Type": "application/x-npy"})
            response.raise_for_status()
            return response.json()

        def polyfit() -> tuple[np.ndarray, np.ndarray]:
            return np.polyfit(x, y, 1, cov=True)

        # The answers first: both bodies give numpy.polyfit's line and covariance (no sigma:
        # polyfit's cov=True scales by chi2/ndf, as the service says it does).
        (m, q), cov = polyfit()
        for answer in (fit_json(), fit_npy()):
            np.testing.assert_allclose([answer["m"], answer["q"]], [m, q], rtol=1e-9)
            np.testing.assert_allclose(answer["covariance"], cov, rtol=1e-6)

        stats = alternate({"numpy.polyfit in-process": polyfit, "service, .npy body": fit_npy,
                           "service, JSON body": fit_json}, repeats=3 if quick else 7)
    rows = ratio_rows(stats, "numpy.polyfit in-process", points=n)
    rows += [{"case": "client: encode JSON body", "median_ms": json_encode_s * 1e3, "points": n,
              "body_mb": len(json_body) / 2**20},
             {"case": "client: encode .npy body", "median_ms": npy_encode_s * 1e3, "points": n,
              "body_mb": len(npy_body) / 2**20}]
    return {
        "title": f"Line fit: least squares on {n:,} points, service vs numpy.polyfit",
        "rows": rows,
        "notes": [f"server {srv.url}; answers checked equal to numpy.polyfit first (rtol 1e-9)",
                  "ratio = time / numpy.polyfit time: > 1, the service is slower",
                  "service rows: upload + parse + fit + JSON answer, bodies encoded beforehand "
                  "(encoding times in the last two rows, measured once)"],
    }
