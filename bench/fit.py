"""Line fit: least squares through the service vs ``numpy.polyfit`` in-process.

The service is timed end to end from this process (upload, parse, fit, answer): 10^6 points as a
binary ``.npy`` body, and as a JSON body the most points whose body stays under the service's
JSON limit (``limits.max_json_body_bytes``, 4 MiB by default: 50,000 points), each against
``numpy.polyfit(x, y, 1, cov=True)`` on the same arrays, here. The bodies are encoded once,
before timing; the time to encode them is reported on its own.
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
JSON_POINTS = 50_000  # ~1.9 MB of JSON: under the default 4 MiB limit


def run(quick: bool) -> dict[str, Any]:
    srv = server(quick)
    n = 10_000 if quick else 1_000_000
    n_json = min(n, JSON_POINTS)
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 100.0, n)
    y = TRUE_M * x + TRUE_Q + rng.normal(0.0, 5.0, n)
    x_json, y_json = x[:n_json], y[:n_json]

    start = time.perf_counter()
    json_body = json.dumps({"x": x_json.tolist(), "y": y_json.tolist(), "method": "least_squares"}).encode()
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

        def polyfit_json_points() -> tuple[np.ndarray, np.ndarray]:
            return np.polyfit(x_json, y_json, 1, cov=True)

        # The answers first: both bodies give numpy.polyfit's line and covariance (no sigma:
        # polyfit's cov=True scales by chi2/ndf, as the service says it does).
        for answer, (line, cov) in ((fit_npy(), polyfit()), (fit_json(), polyfit_json_points())):
            np.testing.assert_allclose([answer["m"], answer["q"]], line, rtol=1e-9)
            np.testing.assert_allclose(answer["covariance"], cov, rtol=1e-6)

        binary = alternate({"numpy.polyfit in-process": polyfit, "service, .npy body": fit_npy},
                           repeats=3 if quick else 7)
        text = alternate({"numpy.polyfit in-process": polyfit_json_points, "service, JSON body": fit_json},
                         repeats=3 if quick else 7)
    rows = ratio_rows(binary, "numpy.polyfit in-process", points=n)
    rows += ratio_rows(text, "numpy.polyfit in-process", points=n_json)
    rows += [{"case": "client: encode JSON body", "median_ms": json_encode_s * 1e3, "points": n_json,
              "body_mb": len(json_body) / 2**20},
             {"case": "client: encode .npy body", "median_ms": npy_encode_s * 1e3, "points": n,
              "body_mb": len(npy_body) / 2**20}]
    return {
        "title": f"Line fit: least squares on {n:,} points (.npy) and {n_json:,} (JSON), service "
                 "vs numpy.polyfit",
        "rows": rows,
        "notes": [f"server {srv.url}; answers checked equal to numpy.polyfit first (rtol 1e-9)",
                  "ratio = time / numpy.polyfit time on the same points: > 1, the service is slower",
                  f"JSON: {n_json:,} points, a body under the service's JSON limit (4 MiB by "
                  "default); .npy: all the points",
                  "service rows: upload + parse + fit + JSON answer, bodies encoded beforehand "
                  "(encoding times in the last two rows, measured once)"],
    }
