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
