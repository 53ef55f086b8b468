"""Smoke test of a GPU deployment: `python -m bench.gpu_smoke [--allow-cpu]`.

Made for the GPU server itself, with no internet (inside the container:
``docker compose exec labcrunch python -m bench.gpu_smoke``). In under five minutes it

1. asserts JAX sees a GPU (and TensorFlow too, when installed), unless ``--allow-cpu``;
2. builds the app in-process (``create_app`` + TestClient, start-up warm-up included) and sends
   one request to every ``/v1`` route, checking the answer against a closed form or an
   in-process reference, and that compute ran on the GPU;
3. prints the fractal throughput in pixel-iterations per second.

A ``/v1`` route with no smoke request here is a failure, so a new endpoint cannot slip past it.
Exit status 0 when every check passed.
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

SEED_MODEL = {"simple": {"kind": "uncorrelated_background", "signal": [5.0], "bkg": [10.0],
                         "bkg_uncertainty": [3.5]}}
# The seed's model at its Asimov data (n = 15, aux = tau = (10/3.5)**2): bestfit (1, 1),
# covariance = inv(Hessian of −ln L) = inv([[15·25, 15·50], [15·50, 15·100 + 225 tau]] / 225).
SEED_MODEL_COVARIANCE = np.array([[1.09, -0.245], [-0.245, 0.1225]])
BUDGET_S = 300  # the whole smoke test, start-up included, on the GPU server
LINE_X = np.linspace(0.0, 9.0, 10)
LINE_Y = 2.5 * LINE_X - 1.0 + np.array([0.1, -0.2, 0.05, 0.0, 0.3, -0.1, -0.25, 0.2, 0.0, -0.1])


@dataclass
class Smoke:
    """One request to one route, and the check of its answer (raises AssertionError)."""

    route: str  # the route's path template, as the app declares it
    method: str
    url: str
    check: Callable[[Any], None]
    json: dict[str, Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    on_gpu: bool = True  # the answer's `device` must name the GPU (false: a list, or CPU by design)


def _json(response: Any) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/json"), response.headers
    return response.json()


def _close(actual: Any, expected: Any, rtol: float = 1e-6, atol: float = 1e-9) -> None:
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, rtol=rtol, atol=atol)


def _check_gradient(response: Any) -> None:
    body = _json(response)
    _close(body["value"], 4.0)  # (x - 1)**2 at 3
    _close(body["gradient"]["x"], 4.0)  # 2 (x - 1)


def _check_minimize(response: Any) -> None:
    runs = _json(response)["runs"]
    for run, rate in zip(runs, (0.1, 0.01), strict=True):
        _close(run["x"]["x"], (1 - 2 * rate) ** 10, rtol=1e-5)  # SGD on x**2: x_k = x_0 (1 - 2 lr)^k


def _check_optimizers(response: Any) -> None:
    names = {o["name"] for o in response.json()}
    assert {"sgd", "momentum", "adam", "lbfgs"} <= names, names


def _check_fit(response: Any) -> None:
    body = _json(response)
    m, q = np.polyfit(LINE_X, LINE_Y, 1)
    _close([body["m"], body["q"]], [m, q], rtol=1e-8)


def _check_fit_descent(response: Any) -> None:
    body = _json(response)
    m, q = np.polyfit(LINE_X, LINE_Y, 1)
    _close([body["m"], body["q"]], [m, q], rtol=1e-6)


def _check_pyhf_fit(response: Any) -> None:
    body = _json(response)
    _close(body["bestfit"], [1.0, 1.0], rtol=1e-3, atol=1e-3)
    _close(body["covariance"], SEED_MODEL_COVARIANCE, rtol=1e-3, atol=1e-4)


def _check_pyhf_scan(response: Any) -> None:
    body = _json(response)
    assert np.asarray(body["values"], dtype=np.float64).shape == (5, 4)  # (y points, x points)
    # The gradient grid passes through the best fit (1, 1), where ln L is stationary.
    i, j = body["gradient_y"].index(1.0), body["gradient_x"].index(1.0)
    _close([body["gradient"]["d_dx"][i][j], body["gradient"]["d_dy"][i][j]], [0.0, 0.0], atol=1e-6)


def _check_cls(response: Any) -> None:
    body = _json(response)
    cls = np.asarray(body["cls"], dtype=np.float64)
    assert ((cls > 0) & (cls <= 1)).all(), cls


def _check_upper_limit(response: Any) -> None:
    body = _json(response)
    observed = float(np.asarray(body["observed"], dtype=np.float64))
    assert 0.5 < observed < 5.0, observed  # 5 signal over 10 ± 3.5 background: a few times mu=1


def _png_of_size(width: int, height: int) -> Callable[[Any], None]:
    def check(response: Any) -> None:
        from PIL import Image

        assert response.headers["content-type"] == "image/png", response.headers
        with Image.open(io.BytesIO(response.content)) as image:
            assert image.size == (width, height), image.size

    return check


def _check_fractal_counts(response: Any) -> None:
    counts = np.load(io.BytesIO(response.content))
    assert counts.shape == (64, 96), counts.shape
    # The default view is the seed's, centred on 0: the pixels next to the centre lie in the
    # main cardioid and never escape; the corners (|c| > 2) escape at once.
    assert (counts[31:33, 47:49] == 50).all(), counts[30:34, 46:50]
    assert counts[0, 0] == counts[-1, -1] == 1, (counts[0, 0], counts[-1, -1])


SEED_NETWORK = {"inputs": 4, "layers": [{"units": 64, "activation": "relu"},
                                        {"units": 32, "activation": "relu"},
                                        {"units": 1, "activation": "softmax"}]}
LINEAR_NETWORK = {"inputs": 2, "layers": [{"units": 1}],
                  "weights": [{"kernel": [[2.0], [3.0]], "bias": [1.0]}]}


def _check_dense_summary(response: Any) -> None:
    body = _json(response)
    assert [layer["parameters"] for layer in body["layers"]] == [320, 2080, 33], body["layers"]
    assert body["total_parameters"] == 2433 and "softmax to 1 unit" in body["warnings"][0]


def _check_dense_weights(response: Any) -> None:
    (kernel, bias), = ((np.asarray(w["kernel"]), np.asarray(w["bias"])) for w in _json(response)["weights"])
    assert kernel.shape == (4, 3) and np.abs(kernel).max() <= math.sqrt(6 / 7), kernel  # Glorot
    _close(bias, np.zeros(3))


def _check_dense_predict(response: Any) -> None:
    body = _json(response)
    _close(body["outputs"], [[6.0], [1.0]], rtol=1e-12)  # 2·x0 + 3·x1 + 1
    _close(body["jacobian"], [[[2.0, 3.0]], [[2.0, 3.0]]], rtol=1e-12)


def _check_dense_train(response: Any) -> None:
    weights = _json(response)["weights"][0]  # full-batch SGD on mse: the least-squares line
    _close([weights["kernel"][0][0], weights["bias"][0]], np.polyfit(LINE_X, LINE_Y, 1), rtol=1e-6)


def smoke_requests() -> list[Smoke]:
    pyhf = {"model": SEED_MODEL, "data": "asimov"}
    return [
        Smoke("/v1/gradient", "POST", "/v1/gradient", _check_gradient,
              json={"expression": "(x - 1)**2", "at": {"x": 3.0}}),
        Smoke("/v1/gradient", "POST", "/v1/gradient", _check_gradient,
              json={"expression": "(x - 1)**2", "at": {"x": 3.0}, "backend": "tensorflow"}),
        Smoke("/v1/minimize", "POST", "/v1/minimize", _check_minimize,
              json={"expression": "x**2", "start": {"x": 1.0}, "optimizer": "sgd",
                    "learning_rate": [0.1, 0.01], "steps": 10}),
        Smoke("/v1/minimize/optimizers", "GET", "/v1/minimize/optimizers", _check_optimizers,
              on_gpu=False),
        # Least squares is closed-form numpy on the CPU by design (its `device` says cpu).
        Smoke("/v1/fit/line", "POST", "/v1/fit/line", _check_fit,
              json={"x": LINE_X.tolist(), "y": LINE_Y.tolist(), "method": "least_squares"}, on_gpu=False),
        # Full-batch SGD on jax (standardized x): a quadratic, so it reaches the least-squares line.
        Smoke("/v1/fit/line", "POST", "/v1/fit/line", _check_fit_descent,
              json={"x": LINE_X.tolist(), "y": LINE_Y.tolist(), "method": "gradient_descent",
                    "gd": {"optimizer": "sgd", "learning_rate": 0.1, "epochs": 200, "batch_size": 10}}),
        Smoke("/v1/pyhf/fit", "POST", "/v1/pyhf/fit", _check_pyhf_fit, json=pyhf),
        Smoke("/v1/pyhf/scan", "POST", "/v1/pyhf/scan", _check_pyhf_scan,
              json={**pyhf, "x": {"name": "mu", "low": 0.0, "high": 2.0, "points": 4},
                    "y": {"name": "uncorr_bkguncrt[0]", "low": 0.5, "high": 1.5, "points": 5},
                    "gradient_points": [3, 3]}),
        Smoke("/v1/pyhf/hypotest", "POST", "/v1/pyhf/hypotest", _check_cls,
              json={**pyhf, "poi_values": [0.5, 2.0]}),
        Smoke("/v1/pyhf/upper-limit", "POST", "/v1/pyhf/upper-limit", _check_upper_limit,
              json={**pyhf, "scan": {"start": 0.5, "stop": 5.0, "points": 6}}),
        Smoke("/v1/fractal/{kind}.png", "GET", "/v1/fractal/julia.png", _png_of_size(80, 60),
              params={"width": 80, "height": 60, "max_iter": 100, "c_re": -0.7269, "c_im": 0.1889}),
        Smoke("/v1/fractal", "POST", "/v1/fractal", _check_fractal_counts,
              json={"kind": "mandelbrot", "width": 96, "height": 64, "max_iter": 50, "format": "npy"}),
        Smoke("/v1/fractal/tiles/{z}/{x}/{y}.png", "GET", "/v1/fractal/tiles/1/0/1.png",
              _png_of_size(256, 256), params={"max_iter": 100}),
        # Summary is arithmetic in the HTTP process and initial weights numpy: no device.
        Smoke("/v1/nn/dense/summary", "POST", "/v1/nn/dense/summary", _check_dense_summary,
              json={"network": SEED_NETWORK}, on_gpu=False),
        Smoke("/v1/nn/dense/weights", "POST", "/v1/nn/dense/weights", _check_dense_weights,
              json={"network": {"inputs": 4, "layers": [{"units": 3, "activation": "relu"}],
                                "seed": 1}}, on_gpu=False),
        Smoke("/v1/nn/dense/predict", "POST", "/v1/nn/dense/predict", _check_dense_predict,
              json={"network": LINEAR_NETWORK, "x": [[1.0, 1.0], [0.0, 0.0]], "jacobian": True}),
        Smoke("/v1/nn/dense/train", "POST", "/v1/nn/dense/train", _check_dense_train,
              json={"network": {"inputs": 1, "layers": [{"units": 1}], "seed": 0},
                    "x": LINE_X[:, None].tolist(), "y": LINE_Y.tolist(), "optimizer": "sgd",
                    "learning_rate": 0.02, "epochs": 2000, "batch_size": 10, "shuffle": False}),
    ]


def check_devices(allow_cpu: bool) -> tuple[bool, list[str]]:
    """Whether JAX (and TensorFlow, when installed) see a GPU; the lines to print."""
    import jax

    from labcrunch_service import backends

    backends.configure()
    jax_gpus = [d for d in jax.devices() if d.platform == "gpu"]
    lines = [f"jax {jax.__version__}: {', '.join(f'{d.platform}:{d.id} {d.device_kind}' for d in jax.devices())}"]
    ok = bool(jax_gpus)
    if backends.tensorflow_available():
        tf_gpus = backends.tensorflow().config.list_physical_devices("GPU")
        lines.append(f"tensorflow: {len(tf_gpus)} GPU(s) {[d.name for d in tf_gpus]}")
        ok = ok and bool(tf_gpus)
    else:
        lines.append("tensorflow: not available")
    if not ok and not allow_cpu:
        lines.append("FAIL: no GPU visible (driver, NVIDIA Container Toolkit, `gpus`/`deploy` reservation?)")
    return ok, lines


def fractal_throughput(client: Any, side: int, max_iter: int, repeats: int = 3) -> dict[str, float]:
    """Best-of-``repeats`` time of one ``side``² Mandelbrot of the seed's view (the service's
    default box) as raw counts, request and .npy transfer included.

    Pixel-iterations are the steps the definition takes, the sum of the counts (as in
    bench/fractal.py), not side² × max_iter: most pixels of the view escape early.
    """
    body = {"kind": "mandelbrot", "width": side, "height": side, "max_iter": max_iter, "format": "npy"}
    response = client.post("/v1/fractal", json=body)  # compiles for this shape
    response.raise_for_status()
    steps = int(np.load(io.BytesIO(response.content)).sum(dtype=np.int64))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        client.post("/v1/fractal", json=body).raise_for_status()
        best = min(best, time.perf_counter() - start)
    return {"side": side, "max_iter": max_iter, "seconds": best, "pixel_iterations_per_s": steps / best}


def throughput_sides(gpu: bool, limits: dict[str, Any], max_iter: int, side: int | None = None) -> list[int]:
    """Image sides for the throughput line: ``side`` when given; on a GPU 2000 (the seed's
    size) and the largest square the service's limits let one request have at ``max_iter``
    (4096 at the default limits); on the CPU 256."""
    if side:
        return [side]
    if not gpu:
        return [256]
    largest = min(math.isqrt(limits["max_pixels"]), math.isqrt(limits["max_pixel_iterations"] // max_iter))
    return sorted({min(2000, largest), largest})


def run_smoke(client: Any, requests: list[Smoke], routes: set[str], require_gpu: bool) -> list[str]:
    """Send each request; return the failures (and print one line per request)."""
    failures = []
    covered = {smoke.route for smoke in requests}
    for route in sorted(routes - covered):
        failures.append(f"{route}: no smoke request in bench/gpu_smoke.py")
    for smoke in requests:
        label = f"{smoke.method} {smoke.url}"
        if smoke.route not in routes:
            print(f"  skip  {label} (route not in this build)")
            continue
        start = time.perf_counter()
        response = client.request(smoke.method, smoke.url, json=smoke.json, params=smoke.params)
        ms = (time.perf_counter() - start) * 1e3
        try:
            assert response.status_code == 200, f"HTTP {response.status_code}: {response.text[:500]}"
            smoke.check(response)
            if require_gpu and smoke.on_gpu:  # images say it in a header, JSON in a field
                device = response.headers.get("X-Device") or response.json().get("device", "")
                assert device.startswith(("cuda", "gpu")), f"computed on {device!r}, not the GPU"
        except AssertionError as exc:
            failures.append(f"{label}: {exc}")
            print(f"  FAIL  {label} ({ms:.0f} ms): {exc}")
        else:
            print(f"  ok    {label} ({ms:.0f} ms)")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_smoke", description=__doc__.splitlines()[0])
    parser.add_argument("--allow-cpu", action="store_true",
                        help="run without a GPU (checks the script itself; throughput is the CPU's)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the start-up warm-up compiles")
    parser.add_argument("--side", type=int, default=None,
                        help="fractal throughput image side (default on GPU: 2000 and the largest the "
                             "limits allow, 4096 by default; on CPU 256), 1,000 iterations")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    gpu, lines = check_devices(args.allow_cpu)
    print("\n".join(lines))
    if not gpu and not args.allow_cpu:
        return 2

    from fastapi.testclient import TestClient

    from labcrunch_service.app import create_app
    from labcrunch_service.settings import Settings

    app = create_app(Settings(warmup=not args.no_warmup, log_json=False))
    routes = {path for path in app.openapi()["paths"] if path.startswith("/v1/")} - {"/v1/info"}
    with TestClient(app) as client:
        while client.get("/readyz").status_code != 200:
            time.sleep(0.1)
        info = client.get("/v1/info").json()
        print(f"service {info['version']}: jax on {info['backends']['jax']['default_device']}; "
              f"ready {time.perf_counter() - started:.1f} s after start; warm-up errors: "
              f"{info['warmup_errors'] or 'none'}")
        failures = run_smoke(client, smoke_requests(), routes, require_gpu=gpu)
        if "/v1/fractal" in routes:
            for side in throughput_sides(gpu, info["limits"], 1000, args.side):
                try:
                    t = fractal_throughput(client, side, 1000)
                except httpx.HTTPStatusError as exc:  # a refused request fails the smoke, not the script
                    failures.append(f"fractal throughput {side}x{side}: {exc.response.text[:300]}")
                    continue
                print(f"fractal {side}x{side}, 1000 iterations: {t['seconds'] * 1e3:.0f} ms, "
                      f"{t['pixel_iterations_per_s']:.3g} pixel-iterations/s")
    elapsed = time.perf_counter() - started
    if elapsed > BUDGET_S:
        failures.append(f"took {elapsed:.0f} s, over the {BUDGET_S} s budget")
    print(f"{len(failures)} failed in {elapsed:.0f} s")
    for failure in failures:
        print(f"FAIL {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
