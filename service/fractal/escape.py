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

import contextvars
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from labcrunch_service import backends
from labcrunch_service.progress import report

backends.configure()

KINDS = ("mandelbrot", "julia")
DTYPES = {"float32": np.float32, "float64": np.float64}

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
    if kind == "mandelbrot":  # only the first round meets them: later ones hold survivors only
        never = lax.cond(first_step == 0, _in_cardioid_or_bulb, lambda a, b: jnp.zeros(size, bool),
                         c_re, c_im)
    else:
        never = jnp.zeros(size, bool)
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


# --- the host loop ---------------------------------------------------------------------------

#: Rows of one render are dealt out to this many threads on a CPU (row i to thread i mod k): XLA
#: runs one call on about one core, and each thread's host work between rounds (compaction)
#: overlaps the other threads' compiled rounds. On an accelerator, one thread feeds it.
CPU_THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
MIN_THREAD_PIXELS = 1 << 16  # below this a thread's share costs more to hand out than it saves
HOST_ALIGNMENT = 64  # JAX on a CPU computes on a numpy array in place when it is this aligned
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _threads(n_pixels: int) -> int:
    if not _on_cpu():
        return 1
    return max(1, min(CPU_THREADS, n_pixels // MIN_THREAD_PIXELS))


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(CPU_THREADS, thread_name_prefix="fractal")
        return _pool


def _state(rows: int, live: int, chunk: int, dtype: np.dtype) -> np.ndarray:
    """Uninitialised live-pixel state, ``rows`` × capacity (``live`` padded to whole buckets),
    with 64-byte-aligned rows so that each chunk goes to JAX without a copy."""
    last = live % chunk
    capacity = live - last + (chunk_bucket(last) if last else 0)
    raw = np.empty(rows * capacity * dtype.itemsize + HOST_ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % HOST_ALIGNMENT
    return raw[start:start + rows * capacity * dtype.itemsize].view(dtype).reshape(rows, capacity)


def _escape_counts(kind, x, y, max_iter, escape_radius, c, dtype) -> Escape:
    """Counts of the picture, its rows shared out among threads (bit-identical to one thread:
    a pixel's orbit does not depend on the pixels computed beside it)."""
    dtype = np.dtype(dtype)
    threads = _threads(x.size * y.size)
    if threads == 1:
        counts, modulus_sq = _escape_rows(kind, x, y, max_iter, escape_radius, c, dtype)
    else:
        counts = np.empty((y.size, x.size), np.int32)
        modulus_sq = np.empty((y.size, x.size), dtype)
        jobs = [_executor().submit(contextvars.copy_context().run, _escape_rows, kind, x,
                                   y[first::threads], max_iter, escape_radius, c, dtype)
                for first in range(threads)]
        for first, job in enumerate(jobs):
            counts[first::threads], modulus_sq[first::threads] = job.result()
    return Escape(counts=counts, modulus_sq=modulus_sq, max_iter=max_iter,
                  escape_radius=float(escape_radius))


def _escape_rows(kind, x, y, max_iter, escape_radius, c, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Counts and |z|² of the picture with columns ``x`` and rows ``y``, one round at a time.

    The live pixels are the columns of one array (rows: z_re, z_im, for Mandelbrot c_re, c_im,
    and the flat pixel index as the bits of a number of the same size), padded to whole chunk
    buckets: a chunk is a view of it, handed to JAX as it is. After a round, each chunk's
    escaped pixels are written into the picture, and its survivors gathered straight into the
    next round's array.
    """
    width, height = x.size, y.size
    n_pixels = width * height
    radius_sq = dtype.type(escape_radius) ** 2
    index_type = np.dtype(f"int{8 * dtype.itemsize}")
    counts = np.full(n_pixels, max_iter, np.int32)
    modulus_sq = np.zeros(n_pixels, dtype)
    mandelbrot = kind == "mandelbrot"
    chunk = CHUNK if _on_cpu() else ACCELERATOR_CHUNK

    live = _state(5 if mandelbrot else 3, n_pixels, chunk, dtype)
    pixel_re, pixel_im = (2, 3) if mandelbrot else (0, 1)
    live[pixel_re, :n_pixels].reshape(height, width)[:] = x
    live[pixel_im, :n_pixels].reshape(height, width)[:] = y[:, None]
    if mandelbrot:  # z_0 = 0, c = the pixel; Julia: z_0 = the pixel, one c for all
        live[:2, :n_pixels] = 0
    c_re, c_im = np.asarray(c.real, dtype), np.asarray(c.imag, dtype)
    live[-1, :n_pixels].view(index_type)[:] = np.arange(n_pixels, dtype=index_type)
    n_live = n_pixels

    step = 0
    lengths = _round_lengths()
    while n_live and step < max_iter:
        report(step, max_iter, "iterations")
        stop = min(step + next(lengths), max_iter)
        live[:2, n_live:] = np.nan  # padding escapes at once; its results are dropped
        if mandelbrot:
            live[2:4, n_live:] = 0
        calls = []
        for start in range(0, n_live, chunk):  # dispatched asynchronously, then collected
            size = chunk_bucket(min(chunk, n_live - start))
            part = live[:, start:start + size]
            calls.append((start, min(size, n_live - start), _round(
                part[0], part[1], part[2] if mandelbrot else c_re, part[3] if mandelbrot else c_im,
                np.int32(step), np.int32(stop), radius_sq, kind=kind)))
        in_order = n_live == n_pixels  # nothing dropped yet: chunk k holds pixels start..start+n
        rounds = [(start, n, *_record_escapes(
                      slice(start, start + n) if in_order else live[-1, start:start + n].view(index_type),
                      call, n, counts, modulus_sq))
                  for start, n, call in calls]
        n_live = sum(len(alive) for *_, alive in rounds)
        following = _state(live.shape[0], n_live, chunk, dtype)
        at = 0
        for start, n, z_re, z_im, alive in rounds:
            end = at + len(alive)
            np.take(z_re, alive, out=following[0, at:end])
            np.take(z_im, alive, out=following[1, at:end])
            for row in range(2, live.shape[0]):
                np.take(live[row, start:start + n], alive, out=following[row, at:end])
            at = end
        live = following
        step = stop
    return counts.reshape(height, width), modulus_sq.reshape(height, width)


def _record_escapes(pixel, call, n, counts, modulus_sq):
    """Write one chunk's escaped pixels (flat indices ``pixel``, or a slice of the picture
    while the live pixels are still all of them, in order) into the picture; return its z after
    the round and the positions of the pixels still alive."""
    z_re, z_im, status = (np.asarray(a)[:n] for a in call)
    if isinstance(pixel, slice):  # a masked write streams through memory; a scatter does not
        escaped = (status < 0) & (status != NEVER)
        np.copyto(counts[pixel], -status, where=escaped)
        np.copyto(modulus_sq[pixel], z_re * z_re + z_im * z_im, where=escaped)
        return z_re, z_im, np.flatnonzero(status >= 0)
    gone = np.flatnonzero(status < 0)  # escaped, or never will (NEVER)
    escaped = gone[status[gone] != NEVER]
    hit = pixel[escaped]
    counts[hit] = -status[escaped]
    hit_re, hit_im = z_re[escaped], z_im[escaped]
    modulus_sq[hit] = hit_re * hit_re + hit_im * hit_im
    return z_re, z_im, np.flatnonzero(status >= 0)


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
