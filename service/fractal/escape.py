"""Escape-time counts of the Mandelbrot and Julia sets, compiled with JAX.

The definition (README, tests): with z_{n+1} = z_n² + c, Mandelbrot starts at z_0 = 0 with
c = the pixel, Julia at z_0 = the pixel with a given c. A pixel's count is the smallest n ≥ 1
with |z_n| > R (the escape radius; R ≥ 2 and, for Julia, R ≥ |c|), or ``max_iter`` when there
is none. Arithmetic is done in the requested precision (float32 or float64), starting from the
pixel coordinates rounded to that precision.

How it is fast, while computing exactly that:

- Only live pixels are iterated. A *round* runs every live pixel a few dozen to a few hundred
  steps in one compiled call: the live pixels (their z, and c for Mandelbrot) are cut into
  chunks padded to a power-of-4 *bucket*, each chunk into cache-sized tiles, and each tile runs
  a ``lax.while_loop`` over blocks of ``STEPS_PER_BLOCK`` steps that stops as soon as no pixel
  of the tile is alive. Between rounds the host writes the escaped pixels' counts into the
  image and keeps only the survivors (numpy's boolean compaction is far faster than XLA's on a
  CPU, and on a GPU it moves a few bytes per live pixel). The work is thus about the sum of
  the counts, like a scalar escape loop, but vectorized. One compile per (bucket, dtype, kind).
- A block's steps run unchecked, and |z| is tested at its end: with R ≥ max(2, |c|) an orbit
  past R only grows (through inf to nan, which counts as out), so escaping is final. The
  pixels that escaped in a block are re-run from the block's start, testing every step, for
  the exact n and z_n.
- Mandelbrot pixels in the main cardioid or the period-2 bulb are in the set, so they never
  escape and are not iterated: their count is ``max_iter`` straight away. This is exact
  arithmetic's answer; a few float32 points within ~10⁻⁷ of the parabolic points 1/4, −3/4
  and −5/4 drift out by rounding when iterated, after ~10⁴ steps (tests).
- Periodicity (Brent): within a round, z is saved at the start of blocks 0, 1, 2, 4, 8, ... and
  a pixel whose z at the end of a block *equals* the saved value exactly is on a cycle of the
  floating-point map itself; it can never escape, so its count is ``max_iter``. Exact equality
  makes this a proof about the computed orbit, not a tolerance-based guess.
- Symmetry: when the rounded rows (and, for Julia, columns) are exact negatives of each other,
  only the top half is computed; the bottom half is its exact mirror (see ``mirrored``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from labcrunch_service import backends
from labcrunch_service.progress import report

backends.configure()


STEPS_PER_BLOCK = 8  # steps unrolled into one loop body: the state stays in registers
TILE = 8192  # pixels iterated together on a CPU; a tile's arrays stay in cache
MIN_BUCKET = 256  # the smallest chunk bucket; buckets are powers of 4 (few compiles)
CHUNK = 1 << 18  # live pixels per compiled call on a CPU (a power of 4, a multiple of TILE)
# On a GPU a chunk is one tile: its parallelism is the whole chunk, and bigger chunks fill it.
ACCELERATOR_CHUNK = 1 << 22
ROUND_STEPS = (8, 16, 32, 64, 128, 256)  # round lengths; the last one repeats
# status of a pixel that will never escape (padding, cardioid or bulb, or on an exact cycle)
NEVER = np.int32(np.iinfo(np.int32).min + 1)


def _on_cpu() -> bool:
    return jax.default_backend() == "cpu"


@dataclass(frozen=True)
class Escape:
    """Counts and |z_count|² per pixel, shape (height, width); row 0 is the top (y_max)."""

    counts: np.ndarray  # int32
    modulus_sq: np.ndarray  # the working dtype; |z_n|² at escape, 0 where the pixel never escaped
    max_iter: int
    escape_radius: float


def chunk_bucket(n: int) -> int:
    """The bucket that holds a chunk of ``n`` live pixels: a power of 4, at least MIN_BUCKET.

    Not :func:`labcrunch_service.cache.bucket_size`: a chunk above TILE must split into whole
    tiles, and :func:`compile_kernels` compiles every bucket at start-up, so few, coarse buckets
    (at most 4x padding, on the last chunk of a round only) serve better here."""
    bits = max(0, n - 1).bit_length()
    return max(MIN_BUCKET, 1 << (bits + bits % 2))


def _round_lengths() -> Iterator[int]:
    yield from ROUND_STEPS
    while True:
        yield ROUND_STEPS[-1]


def _in_cardioid_or_bulb(x, y):
    """Points of the main cardioid or the period-2 bulb (in the Mandelbrot set).

    Tested in float64 on the working-precision coordinates: its own rounding (~1e-16) decides
    only points about that close to the boundary.
    """
    a, b = x.astype(jnp.float64), y.astype(jnp.float64)
    q = (a - 0.25) ** 2 + b * b
    return (q * (q + (a - 0.25)) <= 0.25 * b * b) | ((a + 1.0) ** 2 + b * b <= 0.0625)


def _iterate_tile(z_re, z_im, c_re, c_im, status, first_step, stop, radius_sq):
    """Step the live pixels of one tile from ``first_step`` until ``stop`` or none is alive.

    ``status`` is the number of steps taken while alive; a pixel escaping at step n gets ``-n``.
    Blocks run their steps unchecked (escaping is final: |z| > R ≥ max(2, |c|) only grows,
    through inf to nan) and test |z| at the end; the few pixels that escaped in a block are
    then re-run from the block's start with a test at every step, for the exact n and z_n.
    """

    def any_alive(carry):
        step, *_, status = carry
        return (step < stop) & jnp.any(status == step)

    def block(carry):
        step, z_re, z_im, saved_re, saved_im, start_re, start_im, status = carry
        index = (step - first_step) // STEPS_PER_BLOCK
        checkpoint = (index & (index - 1)) == 0  # blocks 0, 1, 2, 4, 8, ... of the round
        saved_re = jnp.where(checkpoint, z_re, saved_re)
        saved_im = jnp.where(checkpoint, z_im, saved_im)
        a, b = z_re, z_im
        for _ in range(STEPS_PER_BLOCK):
            a, b = a * a - b * b + c_re, (a + a) * b + c_im
        # Materialize the block's end once: without the barrier XLA would recompute the whole
        # unrolled chain inside every fusion below that reads it.
        a, b = lax.optimization_barrier((a, b))
        live = status == step
        out = ~(a * a + b * b <= radius_sq)  # nan counts as out
        escaped = live & out
        start_re = jnp.where(escaped, z_re, start_re)
        start_im = jnp.where(escaped, z_im, start_im)
        # z back exactly at a checkpoint value: on a cycle of the computed map, never escapes
        on_cycle = live & ~out & (a == saved_re) & (b == saved_im)
        status = jnp.where(escaped, -(step + 1), status)  # "escaped in the block from step"
        status = jnp.where(on_cycle, NEVER, jnp.where(live & ~out, step + STEPS_PER_BLOCK, status))
        return step + STEPS_PER_BLOCK, a, b, saved_re, saved_im, start_re, start_im, status

    carry = (first_step, z_re, z_im, z_re, z_im, z_re, z_im, status)
    _, z_re, z_im, _, _, start_re, start_im, status = lax.while_loop(any_alive, block, carry)

    # The exact escape: re-run each pixel that escaped from its block's start, testing each step.
    pending = (status < 0) & (status != NEVER)
    block_start = -status - 1
    a, b = start_re, start_im
    found = jnp.zeros_like(status)
    for k in range(STEPS_PER_BLOCK):
        a, b = a * a - b * b + c_re, (a + a) * b + c_im
        first = pending & (found == 0) & ~(a * a + b * b <= radius_sq)
        found = jnp.where(first, block_start + k + 1, found)
        z_re, z_im = jnp.where(first, a, z_re), jnp.where(first, b, z_im)
    # An escape after `stop` (a final partial block) is no escape within max_iter.
    status = jnp.where(pending, jnp.where(found <= stop, -found, stop), status)
    return z_re, z_im, status


@partial(jax.jit, static_argnames="kind")
def _round(z_re, z_im, c_re, c_im, first_step, stop, radius_sq, *, kind):
    """One round for one chunk of live pixels; returns their z and status after it.

    ``c_re``/``c_im`` are per pixel (Mandelbrot) or scalars (Julia). Padding slots hold a nan
    z, which counts as escaped at once; the caller drops their results.
    """
    size = z_re.shape[0]
    tile = min(TILE, size) if _on_cpu() else size
    c_re, c_im = jnp.broadcast_to(c_re, (size,)), jnp.broadcast_to(c_im, (size,))
    never = _in_cardioid_or_bulb(c_re, c_im) if kind == "mandelbrot" else jnp.zeros(size, bool)
    status = jnp.where(never, NEVER, first_step)

    def run(t):
        return _iterate_tile(*t, first_step, stop, radius_sq)

    tiles = tuple(a.reshape(size // tile, tile) for a in (z_re, z_im, c_re, c_im, status))
    return tuple(a.reshape(size) for a in lax.map(run, tiles))


def compile_kernels(dtype=np.float32) -> None:
    """Compile every bucket's round for both kinds (start-up warm-up: no request waits)."""
    dtype = np.dtype(dtype)
    chunk = CHUNK if _on_cpu() else ACCELERATOR_CHUNK
    size = MIN_BUCKET
    while size <= chunk:
        nan = np.full(size, np.nan, dtype)  # escapes at once: only the compile costs
        for kind, c in (("mandelbrot", nan), ("julia", np.asarray(0, dtype))):
            jax.block_until_ready(_round(nan, nan, c, c, np.int32(0), np.int32(8),
                                         dtype.type(4), kind=kind))
        size *= 4


# --- the public function ---------------------------------------------------------------------


def _padded(values: np.ndarray, size: int, fill) -> np.ndarray:
    if values.size == size:
        return values
    out = np.full(size, fill, values.dtype)
    out[: values.size] = values
    return out


def mirrored(kind: str, x: np.ndarray, y: np.ndarray) -> bool:
    """Whether the bottom rows are exact mirror images of the top rows, so need no work.

    Mandelbrot: the orbit of conj(c) is the conjugate orbit, with the same counts and |z_n|,
    so row height-1-i repeats row i when its y is exactly -y_i. Julia: -z_0 and z_0 give the
    same z_1 = z_0² + c, so the picture repeats under a half turn when moreover column
    width-1-j is at exactly -x_j. Checked on the rounded coordinates; these identities hold bit
    for bit in floating point (negation is exact).
    """
    rows = y.size > 1 and np.array_equal(y[::-1], -y)
    return rows if kind == "mandelbrot" else rows and np.array_equal(x[::-1], -x)


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

    ``x`` and ``y`` are the pixel centers (rounded to ``dtype`` here); ``c`` is used by
    ``julia`` only. The caller has validated the inputs (see ``plane.py``): this only computes.
    A view symmetric about the real axis (Mandelbrot) or the origin (Julia) is computed for
    its top half only.
    """
    x, y = x.astype(dtype), y.astype(dtype)
    if not mirrored(kind, x, y):
        return _escape_counts(kind, x, y, max_iter, escape_radius, c, dtype)
    top = _escape_counts(kind, x, y[: (y.size + 1) // 2], max_iter, escape_radius, c, dtype)

    def whole(half: np.ndarray) -> np.ndarray:
        below = half[y.size // 2 - 1 :: -1] if y.size > 1 else half[:0]
        return np.concatenate([half, below if kind == "mandelbrot" else below[:, ::-1]])

    return Escape(counts=whole(top.counts), modulus_sq=whole(top.modulus_sq), max_iter=max_iter,
                  escape_radius=float(escape_radius))


def _escape_counts(kind, x, y, max_iter, escape_radius, c, dtype) -> Escape:
    dtype = np.dtype(dtype)
    width, height = x.size, y.size
    n_pixels = width * height
    radius_sq = dtype.type(escape_radius) ** 2
    counts = np.full(n_pixels, max_iter, np.int32)
    modulus_sq = np.zeros(n_pixels, dtype)

    # The live pixels: flat index, z and (Mandelbrot) c; compacted after every round.
    pixel = np.arange(n_pixels, dtype=np.int32)
    grid_re, grid_im = np.tile(x.astype(dtype), height), np.repeat(y.astype(dtype), width)
    if kind == "julia":  # z_0 = the pixel, one c for all
        z_re, z_im = grid_re, grid_im
        c_re, c_im = np.asarray(c.real, dtype), np.asarray(c.imag, dtype)
    else:  # z_0 = 0, c = the pixel
        z_re, z_im = np.zeros(n_pixels, dtype), np.zeros(n_pixels, dtype)
        c_re, c_im = grid_re, grid_im
    per_pixel_c = kind == "mandelbrot"

    step = 0
    lengths = _round_lengths()
    chunk = CHUNK if _on_cpu() else ACCELERATOR_CHUNK
    while pixel.size and step < max_iter:
        report(step, max_iter, "iterations")
        stop = min(step + next(lengths), max_iter)
        calls = []
        for start in range(0, pixel.size, chunk):  # dispatched asynchronously, then collected
            part = slice(start, start + chunk)
            size = chunk_bucket(pixel[part].size)
            calls.append(_round(
                _padded(z_re[part], size, np.nan), _padded(z_im[part], size, np.nan),
                _padded(c_re[part], size, 0) if per_pixel_c else c_re,
                _padded(c_im[part], size, 0) if per_pixel_c else c_im,
                np.int32(step), np.int32(stop), radius_sq, kind=kind,
            ))
        # Only the last chunk is padded, at its end: cut the padding off the joined results.
        z_re, z_im, status = (np.concatenate([np.asarray(call[k]) for call in calls])[: pixel.size]
                              for k in range(3))
        escaped = (status < 0) & (status != NEVER)
        hit = pixel[escaped]
        counts[hit] = -status[escaped]
        modulus_sq[hit] = z_re[escaped] ** 2 + z_im[escaped] ** 2
        alive = status >= 0
        pixel, z_re, z_im = pixel[alive], z_re[alive], z_im[alive]
        if per_pixel_c:
            c_re, c_im = c_re[alive], c_im[alive]
        step = stop
    return Escape(
        counts=counts.reshape(height, width),
        modulus_sq=modulus_sq.reshape(height, width),
        max_iter=max_iter,
        escape_radius=float(escape_radius),
    )
