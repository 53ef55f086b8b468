"""Fractal renderer: the service's compiled renderer vs the seed's eager TensorFlow loop, numpy
and numba, on the seed's view ([-1.5, 1.5]², 2000×2000, 1,000 iterations), in one process.

- ``service``: ``labcrunch_service.fractal.escape.escape_counts`` in float32 (the service default), the
  function the endpoints call, kernels compiled before timing. The seed's view is symmetric,
  so the service computes half of it and mirrors it (exactly); ``service-no-mirror`` times
  a view shifted by 0.1 in y, where no half repeats, to show the renderer without that.
- ``numba``: a ``prange`` escape-time loop over rows, float32 (the same precision), the same
  definition; ``numba+cardioid`` adds the cardioid/bulb test the service uses (Mandelbrot).
- ``numpy``: vectorised, iterating only the pixels still alive (boolean compaction each step).
- ``seed-tf``: the seed notebook's eager loop (complex64, ``tf.abs(z) < 4`` counted every step),
  timed for ``SEED_STEPS`` steps and scaled linearly to 1,000: each of its steps does the same
  work on every pixel, so the scaling is fair (said in the notes).
- PNG coloring + encoding of the service's 2000×2000 result, timed on its own.

Every baseline's counts are checked against the service's before timing: equal on short
orbits; long chaotic orbits may differ where float32 rounding order decides them (reported). Ratios are medians of
alternated runs; pixel-iterations/s counts the steps the definition takes (the sum of counts).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from bench.harness import alternate, summarize
from labcrunch_service.fractal import color, escape
from labcrunch_service.fractal.escape import escape_counts
from labcrunch_service.fractal.plane import SEED_JULIA_C, Plane

SEED_STEPS = 100
SHORT = 50  # orbits this short are decided the same way by any float32 evaluation order


def _agreement(counts: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Share of equal counts overall and among short orbits; the latter must be ~all."""
    short = reference < SHORT
    overall = float((counts == reference).mean())
    short_agree = float((counts[short] == reference[short]).mean())
    assert short_agree > 0.995, (overall, short_agree)
    return overall, short_agree


def numba_threads() -> int:
    import numba

    return numba.get_num_threads()


def _numba_kernels():
    import numba

    @numba.njit(parallel=True, cache=False)
    def counts(xs, ys, c_re, c_im, max_iter, julia, cardioid, out):
        four = np.float32(4.0)
        for i in numba.prange(ys.shape[0]):
            for j in range(xs.shape[0]):
                if julia:
                    z_re, z_im, cr, ci = xs[j], ys[i], c_re, c_im
                else:
                    z_re, z_im, cr, ci = np.float32(0.0), np.float32(0.0), xs[j], ys[i]
                    if cardioid:
                        a, b = np.float64(cr), np.float64(ci)
                        q = (a - 0.25) ** 2 + b * b
                        if q * (q + a - 0.25) <= 0.25 * b * b or (a + 1.0) ** 2 + b * b <= 0.0625:
                            out[i, j] = max_iter
                            continue
                n = 0
                while n < max_iter:
                    z_re, z_im = z_re * z_re - z_im * z_im + cr, (z_re + z_re) * z_im + ci
                    n += 1
                    if z_re * z_re + z_im * z_im > four:
                        break
                out[i, j] = n

    return counts


def numpy_counts(xs, ys, c, max_iter, julia):
    grid_x, grid_y = np.meshgrid(xs, ys)
    pixels = (grid_x + 1j * grid_y).astype(np.complex64).ravel()
    z = pixels.copy() if julia else np.zeros_like(pixels)
    cs = np.full_like(pixels, np.complex64(c)) if julia else pixels
    out = np.full(pixels.size, max_iter, np.int32)
    live = np.arange(pixels.size)
    for n in range(1, max_iter + 1):
        z = z * z + cs
        gone = (z.real * z.real + z.imag * z.imag) > 4
        out[live[gone]] = n
        keep = ~gone
        live, z, cs = live[keep], z[keep], cs[keep]
        if not live.size:
            break
    return out.reshape(ys.size, xs.size)


def seed_tf_loop(xs, ys, steps, julia):
    """The seed notebook's cell, as written (eager TensorFlow, one op per line per step)."""
    from labcrunch_service import backends

    tf = backends.tensorflow()
    grid_x, grid_y = np.meshgrid(xs, ys)
    points = tf.constant((grid_x + 1j * grid_y).astype(np.complex64))
    c = tf.constant(np.complex64(SEED_JULIA_C)) if julia else points
    zs = points if julia else tf.zeros_like(points)
    ns = tf.Variable(tf.zeros_like(points, tf.float32))
    for _ in range(steps):
        zs = zs * zs + c
        not_diverged = tf.abs(zs) < 4
        ns.assign_add(tf.cast(not_diverged, tf.float32))
    return ns.numpy()


def run(quick: bool) -> dict[str, Any]:
    size, max_iter = (200, 200) if quick else (2000, 1000)
    repeats = 2 if quick else 5
    xs, ys = Plane(-1.5, 1.5, -1.5, 1.5, size, size).pixel_centers(np.float32)
    # The same work on a view that is not symmetric (no mirror shortcut): shifted by 0.1.
    shifted = Plane(-1.5, 1.5, -1.4, 1.6, size, size).pixel_centers(np.float32)[1]
    numba_counts = _numba_kernels()
    rows, notes = [], []
    for kind in ("mandelbrot", "julia"):
        julia = kind == "julia"
        c = SEED_JULIA_C if julia else 0j
        out = np.empty((size, size), np.int32)

        def service(kind=kind, c=c):
            return escape_counts(kind, xs, ys, max_iter=max_iter, c=c, dtype=np.float32)

        def numba_plain(julia=julia, out=out, c=c, cardioid=False):
            numba_counts(xs, ys, np.float32(c.real), np.float32(c.imag), max_iter, julia,
                         cardioid, out)
            return out

        # The answers first: the baselines count what the service counts.
        reference = service().counts
        agree, short_agree = _agreement(numba_plain(), reference)
        notes.append(f"{kind}: numba's counts equal the service's on {agree:.1%} of pixels, on "
                     f"{short_agree:.2%} of those escaping within {SHORT} steps (long orbits are "
                     "chaotic: float32 rounding order decides them).")
        pixel_iterations = int(reference.sum())

        def service_asymmetric(kind=kind, c=c):
            return escape_counts(kind, xs, shifted, max_iter=max_iter, c=c, dtype=np.float32)

        fns = {"service": service, "service-no-mirror": service_asymmetric, "numba": numba_plain}
        if not julia:
            fns["numba+cardioid"] = lambda: numba_plain(cardioid=True)
        stats = alternate(fns, repeats=repeats)

        start = time.perf_counter()
        numpy_out = numpy_counts(xs, ys, c, max_iter, julia)
        stats["numpy"] = summarize([time.perf_counter() - start])
        _agreement(numpy_out, reference)

        steps = min(SEED_STEPS, max_iter)
        seed_tf_loop(xs[:8], ys[:8], 2, julia)  # import TensorFlow and warm it outside the timing
        start = time.perf_counter()
        seed_tf_loop(xs, ys, steps, julia)
        stats["seed-tf"] = summarize([(time.perf_counter() - start) * max_iter / steps])

        base = stats["service"]["median_s"]
        # the target: the service on the view with no symmetry vs numba's best (prange + cardioid)
        numba_best = stats["numba+cardioid" if not julia else "numba"]["median_s"]
        for name, s in stats.items():
            rows.append({
                "kind": kind, "case": name, "median_ms": s["median_s"] * 1e3,
                "spread": s["spread"], "service_speedup": s["median_s"] / base,
                "vs_numba_best": s["median_s"] / numba_best,
                "Gpix_iter_per_s": pixel_iterations / s["median_s"] / 1e9,
            })

        result = escape_counts(kind, xs, ys, max_iter=max_iter, c=c, dtype=np.float32)
        png_stats = alternate({"color": lambda r=result: color.colorize(r),
                               "color+png": lambda r=result: color.png(color.colorize(r))},
                              repeats=repeats)
        for name, s in png_stats.items():
            rows.append({"kind": kind, "case": name, "median_ms": s["median_s"] * 1e3,
                         "spread": s["spread"]})
    notes += [
        f"{size}x{size} pixels, {max_iter} iterations, view [-1.5, 1.5]^2, float32; "
        "service_speedup = case time / service time (> 1: the service is faster); "
        "vs_numba_best = case time / numba's best time (numba+cardioid for Mandelbrot; the "
        "target is service-no-mirror <= 0.8).",
        f"the service renders on {escape.CPU_THREADS} threads (escape.CPU_THREADS), numba's prange "
        f"on {numba_threads()} (numba.get_num_threads()).",
        f"seed-tf ran {min(SEED_STEPS, max_iter)} steps, scaled linearly to {max_iter} "
        "(the seed's loop does the same work every step).",
        "numpy ran once (not alternated). Gpix_iter_per_s = sum of the counts / time.",
        "color / color+png: turning the service's counts into RGB, and then a PNG "
        "(Pillow, zlib level 1), reported apart from the renderer.",
    ]
    import jax

    if jax.devices()[0].platform != "cpu":  # the big picture only where a GPU is there for it
        n = 8192
        bx, by = Plane(-1.5, 1.5, -1.5, 1.5, n, n).pixel_centers(np.float32)
        big = alternate({"service-8192": lambda: escape_counts(
            "mandelbrot", bx, by, max_iter=max_iter, dtype=np.float32)}, repeats=2)
        counts = escape_counts("mandelbrot", bx, by, max_iter=max_iter, dtype=np.float32).counts
        s = big["service-8192"]
        rows.append({"kind": "mandelbrot", "case": "service-8192", "median_ms": s["median_s"] * 1e3,
                     "spread": s["spread"],
                     "Gpix_iter_per_s": int(counts.sum()) / s["median_s"] / 1e9})
    return {"title": "fractal: renderer vs seed TF loop, numpy, numba", "rows": rows,
            "notes": notes}
