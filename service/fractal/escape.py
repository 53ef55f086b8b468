"""Escape-time counts of the Mandelbrot and Julia sets, compiled with JAX.

The definition (README, tests): with z_{n+1} = z_n² + c, Mandelbrot starts at z_0 = 0 with
c = the pixel, Julia at z_0 = the pixel with a given c. A pixel's count is the smallest n ≥ 1
with |z_n| > R (the escape radius, R ≥ 2), or ``max_iter`` when there is none. Arithmetic is
done in the requested precision (float32 or float64), starting from the pixel coordinates
rounded to that precision.

How it is fast, while computing exactly that:

- Only live pixels are iterated. A *round* runs every live pixel a few dozen to a few hundred
  steps in one compiled call: the live pixels (z and the pixel index, nothing else) are cut into
  chunks padded to a power-of-4 *bucket*, each chunk into cache-sized tiles, and each tile runs
  a ``lax.while_loop`` over blocks of ``STEPS_PER_BLOCK`` unrolled steps that stops as soon as
  no pixel of the tile is alive. Between rounds the host writes the escaped pixels' counts into
  the image and keeps only the survivors (numpy's boolean compaction is far faster than XLA's
  on a CPU, and on a GPU it moves a few bytes per live pixel). The work is thus about the sum
  of the counts, like a scalar escape loop, but vectorised. One compile per
  (bucket, dtype, kind); buckets are few.
- Mandelbrot pixels in the main cardioid or the period-2 bulb are in the set, so (R ≥ 2) they
  never escape and are not iterated: their count is ``max_iter`` straight away.
- Periodicity (Brent): within a round, z is saved at the start of blocks 0, 1, 2, 4, 8, ... and
  a pixel whose z at the end of a block *equals* the saved value exactly is on a cycle of the
  floating-point map itself; it can never escape, so its count is ``max_iter``. Exact equality
  makes this a proof about the computed orbit, not a tolerance-based guess.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from service import backends
from service.compute import check_deadline

backends.configure()

KINDS = ("mandelbrot", "julia")
DTYPES = {"float32": np.float32, "float64": np.float64}

STEPS_PER_BLOCK = 4  # steps unrolled into one loop body: the state stays in registers
TILE = 8192  # pixels iterated together; a tile's arrays stay in cache
MIN_BUCKET = 256  # the smallest chunk bucket; buckets are powers of 4 (few compiles)
CHUNK = 1 << 18  # live pixels per compiled call (a power of 4, a multiple of TILE)
ROUND_STEPS = (8, 16, 32, 64, 128, 256)  # round lengths; the last one repeats
# status of a pixel that will never escape (padding, cardioid or bulb, or on an exact cycle)
NEVER = np.int32(np.iinfo(np.int32).min + 1)
PADDING = np.int32(-1)  # pixel index of a padding slot


@dataclass(frozen=True)
class Escape:
    """Counts and |z_count|² per pixel, shape (height, width); row 0 is the top (y_max)."""

    counts: np.ndarray  # int32
    modulus_sq: np.ndarray  # the working dtype; |z_n|² at escape, 0 where the pixel never escaped
    max_iter: int
    escape_radius: float


def bucket_size(n: int) -> int:
    """The bucket that holds ``n`` items: a power of 4, at least MIN_BUCKET."""
    bits = max(0, n - 1).bit_length()
    return max(MIN_BUCKET, 1 << (bits + bits % 2))


def _round_lengths() -> Iterator[int]:
    yield from ROUND_STEPS
    while True:
        yield ROUND_STEPS[-1]


def _in_cardioid_or_bulb(x, y):
    """Points of the main cardioid or the period-2 bulb (in the Mandelbrot set).

    Tested in float64 on the working-precision coordinates, so the test adds no rounding.
    """
    a, b = x.astype(jnp.float64), y.astype(jnp.float64)
    q = (a - 0.25) ** 2 + b * b
    return (q * (q + (a - 0.25)) <= 0.25 * b * b) | ((a + 1.0) ** 2 + b * b <= 0.0625)


def _iterate_tile(z_re, z_im, c_re, c_im, status, first_step, stop, radius_sq):
    """Step the live pixels of one tile from ``first_step`` until ``stop`` or none is alive.

    ``status`` is the number of steps taken while alive; a pixel escaping at step n gets ``-n``.
    """

    def any_alive(carry):
        step, _, _, _, _, _, status = carry
        return (step < stop) & jnp.any(status == step)

    def block(carry):
        step, z_re, z_im, saved_re, saved_im, _, status = carry
        index = (step - first_step) // STEPS_PER_BLOCK
        checkpoint = (index & (index - 1)) == 0  # blocks 0, 1, 2, 4, 8, ... of the round
        saved_re = jnp.where(checkpoint, z_re, saved_re)
        saved_im = jnp.where(checkpoint, z_im, saved_im)
        for k in range(STEPS_PER_BLOCK):
            n = step + k  # steps taken so far by a pixel alive now
            live = (status == n) & (n < stop)
            new_im = (z_re + z_re) * z_im + c_im
            new_re = z_re * z_re - z_im * z_im + c_re
            escapes = new_re * new_re + new_im * new_im > radius_sq
            status = jnp.where(live, jnp.where(escapes, -(n + 1), n + 1), status)
            z_re = jnp.where(live, new_re, z_re)
            z_im = jnp.where(live, new_im, z_im)
        # z back exactly at a checkpoint value: on a cycle of the computed map, never escapes
        on_cycle = (status >= 0) & (z_re == saved_re) & (z_im == saved_im)
        status = jnp.where(on_cycle, NEVER, status)
        return step + STEPS_PER_BLOCK, z_re, z_im, saved_re, saved_im, None, status

    carry = (first_step, z_re, z_im, z_re, z_im, None, status)
    _, z_re, z_im, _, _, _, status = lax.while_loop(any_alive, block, carry)
    return z_re, z_im, status


@partial(jax.jit, static_argnames="kind")
def _round(z_re, z_im, pixel, columns, rows, width, c, first_step, stop, radius_sq, *, kind):
    """One round for one chunk of live pixels; returns their z and status after it.

    ``pixel`` is the flat index (row * width + column), ``PADDING`` for padding slots;
    ``columns``/``rows`` hold the pixel-centre coordinates, ``c`` = (re, im) for Julia.
    """
    size = pixel.shape[0]
    tile = min(TILE, size)
    valid = pixel != PADDING
    index = jnp.where(valid, pixel, 0)
    x, y = columns[index % width], rows[index // width]
    if kind == "mandelbrot":
        c_re, c_im = x, y
        never = ~valid | _in_cardioid_or_bulb(x, y)
    else:
        c_re, c_im = jnp.full(size, c[0]), jnp.full(size, c[1])
        never = ~valid
    status = jnp.where(never, NEVER, first_step)

    def run(t):
        return _iterate_tile(*t, first_step, stop, radius_sq)

    tiles = tuple(a.reshape(size // tile, tile) for a in (z_re, z_im, c_re, c_im, status))
    return tuple(a.reshape(size) for a in lax.map(run, tiles))


# --- the public function ---------------------------------------------------------------------


def _padded(values: np.ndarray, size: int, fill) -> np.ndarray:
    out = np.full(size, fill, values.dtype)
    out[: values.size] = values
    return out


def escape_counts(
    kind: str,
    x: np.ndarray,
    y: np.ndarray,
    *,
    max_iter: int,
    escape_radius: float = 2.0,
    c: complex = 0j,
    dtype=np.float32,
) -> Escape:
    """Counts for the pixels at columns ``x`` and rows ``y`` (``y[0]`` is the top row).

    ``x`` and ``y`` are the pixel centres, already rounded to ``dtype``; ``c`` is used by
    ``julia`` only. The caller has validated the inputs (see ``plane.py``): this only computes.
    """
    dtype = np.dtype(dtype)
    width, height = x.size, y.size
    n_pixels = width * height
    side = bucket_size(max(width, height))
    columns = jnp.asarray(_padded(x.astype(dtype), side, 0))
    rows = jnp.asarray(_padded(y.astype(dtype), side, 0))
    c_parts = jnp.asarray([c.real, c.imag], dtype)
    radius_sq = dtype.type(escape_radius) ** 2

    counts = np.full(n_pixels, max_iter, np.int32)
    modulus_sq = np.zeros(n_pixels, dtype)
    pixel = np.arange(n_pixels, dtype=np.int32)
    if kind == "julia":  # z_0 = the pixel
        z_re, z_im = np.tile(x.astype(dtype), height), np.repeat(y.astype(dtype), width)
    else:  # z_0 = 0
        z_re, z_im = np.zeros(n_pixels, dtype), np.zeros(n_pixels, dtype)

    step = 0
    lengths = _round_lengths()
    while pixel.size and step < max_iter:
        check_deadline()
        stop = min(step + next(lengths), max_iter)
        chunks = []
        for start in range(0, pixel.size, CHUNK):  # dispatched asynchronously, then collected
            part = slice(start, start + CHUNK)
            size = bucket_size(pixel[part].size)
            chunks.append(_round(
                _padded(z_re[part], size, 0), _padded(z_im[part], size, 0),
                _padded(pixel[part], size, PADDING), columns, rows, np.int32(width), c_parts,
                np.int32(step), np.int32(stop), radius_sq, kind=kind,
            ))
        z_re, z_im, status = (
            np.concatenate([np.asarray(chunk[i]) for chunk in chunks]) for i in range(3)
        )
        escaped = (status < 0) & (status != NEVER)
        where = np.concatenate([pixel, np.full(status.size - pixel.size, PADDING, np.int32)])
        hit = where[escaped]
        counts[hit] = -status[escaped]
        modulus_sq[hit] = z_re[escaped] ** 2 + z_im[escaped] ** 2
        alive = status >= 0
        pixel, z_re, z_im = where[alive], z_re[alive], z_im[alive]
        step = stop
    return Escape(
        counts=counts.reshape(height, width),
        modulus_sq=modulus_sq.reshape(height, width),
        max_iter=max_iter,
        escape_radius=float(escape_radius),
    )
