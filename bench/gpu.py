"""The GPU run, one command and one table: ``python -m bench.gpu [--install] [--allow-cpu] [--quick]``.

Made for a GPU machine with CUDA JAX and no internet (TensorFlow may be absent). ``--install``
first installs labcrunch itself into this Python -- no dependencies, no index, no build
isolation, so nothing is downloaded -- and names any server dependency that is missing. Then:

1. ``smoke``: ``bench.gpu_smoke`` (every route once, each answer checked, computed on the GPU);
2. ``fractal``: Mandelbrot at 2000² and 8192², 1,000 iterations, the seed's view and one with no
   symmetry, through a ``labcrunch serve`` whose ``max_pixels`` is raised to fit 8192²
   (request and .npy transfer included), and the kernel alone in this process;
3. ``gradient``: 10⁶ points, .npz both ways, against a local ``jit(vmap(value_and_grad))``;
4. ``pyhf``: fit + covariance of a 3-channel × 5-bin workspace, cold and warm;
5. ``toys``: a 10⁴-toy hypotest (where this build has toy-based calculators).

Every answer is checked before it is timed. A step that fails is reported in the table and makes
the exit status 1; the other steps still run. ``--allow-cpu --quick`` runs the same steps at tiny
sizes on a CPU (tests/system/test_bench.py), so the script cannot rot between GPU visits.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("smoke", "fractal", "gradient", "pyhf", "toys")
# Imported by the server: checked by --install (TensorFlow is optional).
SERVER_MODULES = ("fastapi", "uvicorn", "pydantic", "pydantic_settings", "jax", "pyhf", "scipy",
                  "optax", "iminuit", "PIL", "jsonpatch", "isal", "platformdirs", "httpx", "numpy")


def install() -> list[str]:
    """Install labcrunch (this tree) without downloading anything; the missing modules."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--no-build-isolation", "-e", str(ROOT)], check=True)
    importlib.invalidate_caches()
    missing = []
    for module in SERVER_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    return missing


def _row(step: str, case: str, value: str, **extra: Any) -> dict[str, Any]:
    return {"step": step, "case": case, "measured": value, **extra}


def smoke(quick: bool, allow_cpu: bool, **_: Any) -> list[dict[str, Any]]:
    from bench import gpu_smoke

    argv = (["--allow-cpu"] if allow_cpu else []) + (["--no-warmup", "--side", "64"] if quick else [])
    started = time.perf_counter()
    status = gpu_smoke.main(argv)
    result = "every route answered and checked" if status == 0 else f"FAILED (exit {status})"
    return [_row("smoke", "bench.gpu_smoke " + " ".join(argv), result,
                 seconds=time.perf_counter() - started, ok=status == 0)]


def fractal(quick: bool, client: Any, **_: Any) -> list[dict[str, Any]]:
    import numpy as np

    from bench.harness import alternate
    from labcrunch._arrays import from_npy
    from labcrunch_service.fractal.escape import escape_counts
    from labcrunch_service.fractal.plane import Plane

    sides, max_iter = ((96, 160), 60) if quick else ((2000, 8192), 1000)
    rows = []
    for side in sides:
        for view, box in (("seed view", (-1.5, 1.5, -1.5, 1.5)), ("no symmetry", (-1.5, 1.5, -1.4, 1.6))):
            body = {"kind": "mandelbrot", "width": side, "height": side, "max_iter": max_iter,
                    "format": "npy", **dict(zip(("x_min", "x_max", "y_min", "y_max"), box, strict=True))}

            def served(body: dict[str, Any] = body) -> Any:
                response = client.post("/v1/fractal", json=body)
                response.raise_for_status()
                return from_npy(response.content)

            xs, ys = Plane(*box, side, side).pixel_centers(np.float32)

            def kernel(xs: Any = xs, ys: Any = ys) -> Any:
                return escape_counts("mandelbrot", xs, ys, max_iter=max_iter, dtype=np.float32).counts

            counts = served()
            assert counts.shape == (side, side) and counts[0, 0] == 1 and (counts == max_iter).any()
            np.testing.assert_array_equal(kernel(), counts)  # same counts in both processes
            stats = alternate({"http": served, "kernel": kernel}, repeats=1 if quick else 3)
            steps = int(counts.sum(dtype=np.int64))
            for where, label in (("http", "through HTTP (.npy answer)"), ("kernel", "kernel in-process")):
                seconds = stats[where]["median_s"]
                rows.append(_row("fractal", f"{side}² {view}, {max_iter} iterations, {label}",
                                 f"{seconds * 1e3:.1f} ms", seconds=seconds,
                                 gpix_iter_per_s=steps / seconds / 1e9))
    return rows


def gradient(quick: bool, client: Any, **_: Any) -> list[dict[str, Any]]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from bench.gradient import BATCH_EXPRESSION, _npz, batch_function
    from bench.harness import alternate
    from labcrunch._arrays import from_npz

    n = 10_000 if quick else 1_000_000
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-3, 3, n), rng.uniform(-3, 3, n)
    body = _npz(x=x, y=y)
    local = jax.jit(jax.vmap(jax.value_and_grad(batch_function, argnums=(0, 1))))

    def run_local() -> tuple[Any, Any]:
        value, (dx, dy) = local(jnp.asarray(x), jnp.asarray(y))
        return np.asarray(value), np.stack([np.asarray(dx), np.asarray(dy)], axis=-1)

    def run_service() -> tuple[Any, Any]:
        response = client.post("/v1/gradient", content=body, params={"expression": BATCH_EXPRESSION},
                               headers={"Content-Type": "application/x-npz", "Accept": "application/x-npz"})
        response.raise_for_status()
        arrays = from_npz(response.content)
        return arrays["value"], arrays["gradient"]

    for got, expected in zip(run_service(), run_local(), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    stats = alternate({"local": run_local, "service": run_service}, repeats=2 if quick else 7)
    local_s, service_s = stats["local"]["median_s"], stats["service"]["median_s"]
    return [_row("gradient", f"{n:,} points, local jit(vmap(value_and_grad))", f"{local_s * 1e3:.1f} ms",
                 seconds=local_s),
            _row("gradient", f"{n:,} points, service with .npz both ways", f"{service_s * 1e3:.1f} ms",
                 seconds=service_s, ratio=service_s / local_s)]


def _workspace(quick: bool) -> dict[str, Any]:
    from bench.pyhf import workspace

    return workspace(*((1, 2) if quick else (3, 5)), seed=5)


def pyhf(quick: bool, client: Any, **_: Any) -> list[dict[str, Any]]:
    import numpy as np

    body = {"model": {"workspace": _workspace(quick)}, "data": "observed"}
    times = []
    for _ in range(2 if quick else 4):
        start = time.perf_counter()
        response = client.post("/v1/pyhf/fit", json=body)
        times.append(time.perf_counter() - start)
        response.raise_for_status()
        answer = response.json()
        assert np.isfinite(answer["bestfit"]).all() and np.isfinite(answer["uncertainties"]).all()
    warm = float(np.median(times[1:]))
    return [_row("pyhf", "fit + covariance, new workspace (compile)", f"{times[0] * 1e3:.0f} ms",
                 seconds=times[0], device=answer["device"]),
            _row("pyhf", "fit + covariance, warm", f"{warm * 1e3:.1f} ms", seconds=warm)]


def toys(quick: bool, client: Any, **_: Any) -> list[dict[str, Any]]:
    ntoys = 100 if quick else 10_000
    body = {"model": {"workspace": _workspace(quick)}, "data": "observed", "poi_values": 1.0,
            "calctype": "toybased", "ntoys": ntoys, "seed": 0}
    start = time.perf_counter()
    response = client.post("/v1/pyhf/hypotest", json=body)
    seconds = time.perf_counter() - start
    if response.status_code == 422 and "calctype" in response.text:
        return [_row("toys", f"{ntoys:,}-toy hypotest", "not in this build (no toy-based "
                     "calculator: 422)", ok=True)]
    response.raise_for_status()
    cls = response.json()["cls"]
    assert 0 < float(cls if not isinstance(cls, list) else cls[0]) <= 1, cls
    return [_row("toys", f"{ntoys:,}-toy hypotest, CLs at mu = 1", f"{seconds:.2f} s", seconds=seconds,
                 toys_per_s=ntoys / seconds)]


RUNNERS: dict[str, Callable[..., list[dict[str, Any]]]] = {
    "smoke": smoke, "fractal": fractal, "gradient": gradient, "pyhf": pyhf, "toys": toys}


def _table(rows: list[dict[str, Any]]) -> str:
    columns = ["step", "case", "measured", "ratio", "gpix_iter_per_s", "toys_per_s", "device"]
    columns = [c for c in columns if any(c in r for r in rows)]

    def cell(value: Any) -> str:
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--install", action="store_true",
                        help="install labcrunch from this tree first (no deps, no downloads)")
    parser.add_argument("--allow-cpu", action="store_true", help="run without a GPU (tests the script)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: seconds, on any machine")
    parser.add_argument("--skip", default="", help=f"comma-separated steps to leave out, of {STEPS}")
    args = parser.parse_args(argv)
    if args.install:
        missing = install()
        if missing:
            print(f"missing server dependencies (install them from a local wheelhouse): {missing}")
            return 2

    import httpx
    import jax

    import labcrunch_service  # noqa: F401 - sets the GPU-sharing environment before JAX starts
    from bench.harness import machine, start_server, stop_servers

    devices = jax.devices()
    print(f"machine: {machine()}; jax {jax.__version__} on {[str(d) for d in devices]}")
    if devices[0].platform == "cpu" and not args.allow_cpu:
        print("FAIL: JAX sees no GPU (use --allow-cpu to run on the CPU anyway)")
        return 2
    steps = [s for s in STEPS if s not in args.skip.split(",")]
    rows: list[dict[str, Any]] = []
    env = {"LABCRUNCH_LIMITS__MAX_PIXELS": str(8192 * 8192),
           "LABCRUNCH_LIMITS__MAX_PIXEL_ITERATIONS": str(8192 * 8192 * 1000),
           "LABCRUNCH_LOAD_TENSORFLOW": "false", "LABCRUNCH_WARMUP": "false" if args.quick else "true",
           "LABCRUNCH_LIMITS__MAX_WALL_SECONDS": "600"}
    started = time.perf_counter()
    try:
        served = [s for s in steps if s != "smoke"]
        srv = start_server(env, ready_timeout_s=900) if served else None
        with httpx.Client(base_url=srv.url if srv else "http://unused", timeout=900) as client:
            for step in steps:
                try:
                    rows += RUNNERS[step](quick=args.quick, allow_cpu=args.allow_cpu, client=client)
                except Exception as exc:  # one broken step must not hide the others' figures
                    traceback.print_exc()
                    rows.append(_row(step, "FAILED", f"{type(exc).__name__}: {exc}"[:200], ok=False))
    finally:
        stop_servers()
    print(f"\n## labcrunch on {devices[0].device_kind if devices[0].platform != 'cpu' else 'CPU'} "
          f"({'quick' if args.quick else 'full'} run, {time.perf_counter() - started:.0f} s)")
    print(_table(rows))
    failed = [r for r in rows if r.get("ok") is False or r["case"] == "FAILED"]
    print(f"{len(failed)} step(s) failed" if failed else "every step passed")
    return 1 if failed else 0


if __name__ == "__main__":
    os.chdir(ROOT)  # the server and the benchmark modules are found from the repository root
    sys.exit(main())
