"""Compile latency: the first request of a new expression and of a new workspace.

Two `labcrunch serve` processes share one data folder (``LABCRUNCH_DATA_DIR``), one after the
other. The first starts with the folder empty: its first request of an expression (a gradient)
and of a workspace (a pyhf fit) pays tracing and compiling. The second finds those programs in
JAX's persistent compilation cache (``<data_dir>/jax-cache``): its first request of the same
expression and workspace still traces, but loads instead of compiling. The same requests sent
again to one process show the in-memory caches. Each process first answers one unrelated
request of each kind, so start-up costs (first JAX call, imports) are not counted as compiles.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from typing import Any

import httpx
import numpy as np

from bench.harness import server, start_server
from bench.pyhf import workspace

EXPRESSION = "(x - 0.3)**2 * cos(x) + exp(-x / 2)"
POINTS = [0.5, 1.0, 2.0]


def _check_gradient(answer: dict[str, Any]) -> None:
    """The expression's value and derivative against the closed forms."""
    x = np.asarray(POINTS)
    value = (x - 0.3) ** 2 * np.cos(x) + np.exp(-x / 2)
    derivative = 2 * (x - 0.3) * np.cos(x) - (x - 0.3) ** 2 * np.sin(x) - np.exp(-x / 2) / 2
    np.testing.assert_allclose(answer["value"], value, rtol=1e-12)
    np.testing.assert_allclose(answer["gradient"]["x"], derivative, rtol=1e-12, atol=1e-15)


def _timed(client: httpx.Client, path: str, body: dict[str, Any]) -> tuple[dict[str, Any], float]:
    start = time.perf_counter()
    response = client.post(path, json=body)
    elapsed = time.perf_counter() - start
    response.raise_for_status()
    return response.json(), elapsed


def _session(url: str, fit: dict[str, Any] | None, again: bool) -> dict[str, float]:
    """First (and, with ``again``, second) request of the expression and of the workspace
    (none: expression only)."""
    times = {}
    cases = [("expression", "/v1/gradient", {"expression": EXPRESSION, "at": {"x": POINTS}})]
    with httpx.Client(base_url=url, timeout=600) as client:
        # start-up costs first, on other requests of each kind
        _timed(client, "/v1/gradient", {"expression": "(x - 1)**2", "at": {"x": 3.0}})
        if fit is not None:
            _timed(client, "/v1/pyhf/fit", {"model": {"simple": {
                "kind": "uncorrelated_background", "signal": [5.0], "bkg": [10.0],
                "bkg_uncertainty": [3.5]}}, "data": "asimov"})
            cases.append(("workspace", "/v1/pyhf/fit", fit))
        for label, path, body in cases:
            answer, times[label] = _timed(client, path, body)
            if label == "expression":
                _check_gradient(answer)
            else:
                assert np.isfinite(answer["bestfit"]).all() and len(answer["uncertainties"]) > 2
            if again:
                times[f"{label} again"] = _timed(client, path, body)[1]
    return times


def _two_processes(fit: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """The session in a fresh server, then in a second one sharing its data folder."""
    data_dir = tempfile.mkdtemp(prefix="labcrunch-bench-compile-")
    env = {"LABCRUNCH_DATA_DIR": data_dir, "LABCRUNCH_WARMUP": "false",
           "LABCRUNCH_LOAD_TENSORFLOW": "false",  # a cold compile may take long on a busy machine
           "LABCRUNCH_LIMITS__MAX_WALL_SECONDS": "600"}
    try:
        first = start_server(env)
        try:
            cold = _session(first.url, fit, again=True)
        finally:
            first.stop()
        second = start_server(env)
        try:
            disk = _session(second.url, fit, again=False)
        finally:
            second.stop()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return cold, disk


def run(quick: bool) -> dict[str, Any]:
    """Quick: the expression only, on the run's shared server (no second process)."""
    channels, bins = 3, 5
    if quick:
        cold, disk = _session(server(quick).url, None, again=True), {}
    else:
        cold, disk = _two_processes({"model": {"workspace": workspace(channels, bins, seed=11)},
                                     "data": "observed"})
    rows = []
    for label, what in (("expression", f"new expression `{EXPRESSION}`, gradient at 3 points"),
                        ("workspace", f"new workspace ({channels} channels x {bins} bins), pyhf fit")):
        if label not in cold:
            continue
        rows.append({"case": what, "first request": "in a fresh process, nothing compiled before",
                     "median_ms": cold[label] * 1e3, "ratio": cold[label] / cold[f"{label} again"]})
        if label in disk:
            rows.append({"case": what, "first request": "in a new process, compiled by an earlier "
                         "one (persistent cache)", "median_ms": disk[label] * 1e3,
                         "ratio": disk[label] / cold[f"{label} again"]})
        rows.append({"case": what, "first request": "the same request again (in-memory caches)",
                     "median_ms": cold[f"{label} again"] * 1e3, "ratio": 1.0})
    return {"title": "Compile latency: first requests, cold and from the persistent cache",
            "rows": rows,
            "notes": ["one sample each (a compile happens once); ratio = time / the same request "
                      "answered from the in-memory caches",
                      "two servers one after the other, sharing LABCRUNCH_DATA_DIR; each first "
                      "answered an unrelated gradient and pyhf fit (start-up costs excluded)",
                      "answers checked: the gradient against the closed form, the fit finite"]}
