"""The escape-count kernel's host loop: a picture shared out among threads is the same picture,
bit for bit, and agrees with the plain-Python definition."""

from __future__ import annotations

import numpy as np
import pytest

from labcrunch_service.fractal import escape
from labcrunch_service.fractal.plane import SEED_JULIA_C, Plane
from tests.helpers.fractal_reference import reference_count

SIDE, MAX_ITER, CHUNK = 200, 120, 1 << 12  # several chunks a round, a few compiles
BOX = (-2.0, 1.0, -1.3, 1.6)  # not symmetric: no mirror shortcut


@pytest.mark.parametrize("kind", ["mandelbrot", "julia"])
def test_threads_and_chunks_do_not_change_a_bit(monkeypatch, kind):
    xs, ys = Plane(*BOX, SIDE, SIDE).pixel_centers(np.float32)
    c = SEED_JULIA_C if kind == "julia" else 0j

    monkeypatch.setattr(escape, "CHUNK", CHUNK)
    monkeypatch.setattr(escape, "MIN_THREAD_PIXELS", CHUNK)

    def render(threads: int) -> escape.Escape:
        monkeypatch.setattr(escape, "CPU_THREADS", threads)
        return escape.escape_counts(kind, xs, ys, max_iter=MAX_ITER, c=c, dtype=np.float32)

    one = render(1)
    many = render(3)  # three threads of interleaved rows
    assert escape._threads(SIDE * SIDE) == 3
    np.testing.assert_array_equal(many.counts, one.counts)
    np.testing.assert_array_equal(many.modulus_sq, one.modulus_sq)

    # ... and both are the definition's counts where float32 rounding cannot change them.
    rng = np.random.default_rng(1)
    checked = 0
    for i, j in rng.integers(0, SIDE, size=(300, 2)):
        expected, sure = reference_count(kind, float(xs[j]), float(ys[i]),
                                         complex(np.float32(c.real), np.float32(c.imag)),
                                         MAX_ITER, 2.0, "float32")
        if sure:
            checked += 1
            assert one.counts[i, j] == expected, (i, j)
    assert checked > 250 and (one.counts == MAX_ITER).any() and (one.counts < 5).any()


@pytest.mark.parametrize("n", [escape.MIN_BUCKET, 4096, 1 << 16])  # one tile, several
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["mandelbrot", "julia"])
def test_the_first_rounds_lean_kernel_is_the_general_round(kind, dtype, n):
    """The first round's own kernel gives what the later rounds' kernel gives from step 0, bit
    for bit: z after the round, the counts (the exact escape step) and |z_n|². The general
    kernel has no cardioid test: the points here are outside the cardioid and the bulb."""
    rng = np.random.default_rng(2)
    pixel_re = rng.uniform(-1.6, 0.6, n).astype(dtype)
    pixel_im = rng.uniform(0.66, 1.3, n).astype(dtype)  # |y| > 0.65: outside cardioid and bulb
    pixel_re[:8], pixel_im[:8] = np.nan, np.nan  # padding
    limits = (np.int32(escape.FIRST_STEPS), np.int32(100), dtype(4.0))  # stop, max_iter, R²
    if kind == "mandelbrot":
        zero = np.zeros((), dtype)
        lean = escape._first_round(zero, zero, pixel_re, pixel_im, *limits, kind=kind)
        general = escape._round(np.zeros(n, dtype), np.zeros(n, dtype), pixel_re, pixel_im,
                                np.int32(0), *limits, kind=kind)
    else:
        c = (np.asarray(-0.8, dtype), np.asarray(0.156, dtype))
        lean = escape._first_round(pixel_re, pixel_im, *c, *limits, kind=kind)
        general = escape._round(pixel_re, pixel_im, *c, np.int32(0), *limits, kind=kind)
    z_re, z_im, counts, modulus_sq = (np.asarray(a) for a in lean)
    expected = [np.asarray(a) for a in general]
    alive = counts == escape.ALIVE
    np.testing.assert_array_equal(counts, expected[2])
    np.testing.assert_array_equal(modulus_sq, expected[3])
    np.testing.assert_array_equal(z_re[alive], expected[0][alive])
    np.testing.assert_array_equal(z_im[alive], expected[1][alive])
    assert alive.sum() > n // 80 and (counts[:8] == 1).all() and (counts[8:] > 1).sum() > n // 40


@pytest.mark.parametrize("chunk", [escape.CHUNK, CHUNK])
def test_chunks_cover_the_live_pixels_with_little_padding(chunk):
    for n in (1, 255, 256, 257, 16383, 16384, 90_045, 262_143, chunk, 4_000_000):
        sizes = escape.chunk_sizes(n, chunk)
        assert all(s & (s - 1) == 0 and s.bit_length() % 2 == 1 for s in sizes)  # powers of 4
        assert all(escape.MIN_BUCKET <= s <= chunk for s in sizes)
        assert n <= sum(sizes) < n + max(escape.MIN_BUCKET, min(chunk, escape.PAD_BELOW))
        assert sizes[:-1] == sorted(sizes[:-1], reverse=True)
        assert all(sizes[:-1].count(s) <= 3 for s in set(sizes) - {chunk})
