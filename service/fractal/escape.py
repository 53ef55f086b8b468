"""Escape-time counts of the Mandelbrot and Julia sets, compiled with JAX.

The definition (README, tests): with z_{n+1} = z_n² + c, Mandelbrot starts at z_0 = 0 with
c = the pixel, Julia at z_0 = the pixel with a given c. A pixel's count is the smallest n ≥ 1
with |z_n| > R (the escape radius; R ≥ 2 and, for Julia, R ≥ |c|), or ``max_iter`` when there
is none. Arithmetic is done in the requested precision (float32 or float64), starting from the
pixel coordinates rounded to that precision.

How it is fast, while computing exactly that:

- Only live pixels are iterated. A *round* runs every live pixel a few dozen to a few hundred
  steps in one compiled call: the live pixels (their z, and c for Mandelbrot) are cut into
  chunks of power-of-4 *buckets* (only the last one padded, see :func:`chunk_sizes`), each
  chunk into cache-sized tiles, and each tile runs a ``lax.while_loop`` over blocks of
  ``STEPS_PER_BLOCK`` steps that stops as soon as no pixel of the tile is alive. The compiled
  call also gives each pixel's count and |z_n|² for the picture; between rounds the host writes
  those of the pixels that are done into the image and keeps only the survivors (numpy's
  boolean compaction is far faster than XLA's on a CPU, and on a GPU it moves a few bytes per
  live pixel). The work is thus about the sum of the counts, like a scalar escape loop, but
  vectorized. Two compiles per (bucket, dtype, kind): the first round's kernel and the others'.
- The first round meets every pixel of the picture, most of which escape within a few steps:
  it is a lean kernel of its own (:func:`_first_round`), ``FIRST_STEPS`` unchecked steps and
  the exact re-run, with none of the later rounds' loop, tiles and cycle bookkeeping (about
  half the time per pixel; later rounds, of a few survivors, gain nothing from it). Its steps
  are the same expressions in the same order, so a pixel's orbit is bit for bit the one the
  later rounds (and a plain loop compiled by XLA, which contracts into FMAs the same way)
  compute.
- A block's steps run unchecked, and |z| is tested at its end: with R ≥ max(2, |c|) an orbit
  past R only grows (through inf to nan, which counts as out), so escaping is final. The
  pixels that escaped in a block are re-run from the block's start, testing every step, for
  the exact n and |z_n|² (the value tested).
- Mandelbrot pixels in the main cardioid or the period-2 bulb are in the set, so they never
  escape: their count is ``max_iter`` after the first round (whose steps they take along with
  their neighbours, unused), and they go no further. This is exact arithmetic's answer; a few
  float32 points within ~10⁻⁷ of the parabolic points 1/4, −3/4 and −5/4 drift out by rounding
  when iterated, after ~10⁴ steps (tests).
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


STEPS_PER_BLOCK = 8  # steps unrolled into one loop body: the state stays in registers
TILE = 8192  # pixels iterated together on a CPU; a tile's arrays stay in cache
MIN_BUCKET = 256  # the smallest chunk bucket; buckets are powers of 4 (few compiles)
PAD_BELOW = 1 << 14  # a round's last live pixels, fewer than this, share one padded bucket
CHUNK = 1 << 18  # live pixels per compiled call on a CPU (a power of 4, a multiple of TILE)
# On a GPU a chunk is one tile: its parallelism is the whole chunk, and bigger chunks fill it.
ACCELERATOR_CHUNK = 1 << 22
ROUND_STEPS = (8, 16, 32, 64, 128, 256)  # round lengths; the last one repeats
FIRST_STEPS = ROUND_STEPS[0]  # the first round's steps, unrolled in :func:`_first_round`
# a later round's status of a pixel that will never escape (it is on an exact cycle)
NEVER = np.int32(np.iinfo(np.int32).min + 1)
ALIVE = np.int32(-1)  # a round's count for a pixel that goes on to the next round


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
    serve better here."""
    bits = max(0, n - 1).bit_length()
    return max(MIN_BUCKET, 1 << (bits + bits % 2))


def chunk_sizes(n: int, chunk: int) -> list[int]:
    """The buckets of the compiled calls that cover ``n`` live pixels, in order: the largest
    whole buckets that fit (at most ``chunk``), then one padded bucket for the rest when it is
    under ``PAD_BELOW`` (or ``chunk``). So at most PAD_BELOW slots of a round are padding
    (one bucket for all would pad up to 3x its pixels), with at most 3 calls of each smaller
    bucket size."""
    sizes = []
    while n > 0:
        if n >= min(chunk, PAD_BELOW):
            sizes.append(min(chunk, 1 << (n.bit_length() - 1) // 2 * 2))  # a power of 4 <= n
        else:
            sizes.append(chunk_bucket(n))
        n -= sizes[-1]
    return sizes


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
    then re-run from the block's start with a test at every step, for the exact n and |z_n|²
    (the value tested). Returns z, status and |z_n|².
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
    modulus_sq = jnp.zeros_like(z_re)
    for k in range(STEPS_PER_BLOCK):
        a, b = a * a - b * b + c_re, (a + a) * b + c_im
        first = pending & (found == 0) & ~(a * a + b * b <= radius_sq)
        found = jnp.where(first, block_start + k + 1, found)
        modulus_sq = jnp.where(first, a * a + b * b, modulus_sq)
    # An escape after `stop` (a final partial block) is no escape within max_iter.
    status = jnp.where(pending, jnp.where(found <= stop, -found, stop), status)
    return z_re, z_im, status, modulus_sq


def _in_picture(z_re, z_im, status, modulus_sq, max_iter):
    """A round's answer for one chunk: z after the round, each pixel's count for the picture,
    ``ALIVE`` for the pixels still alive (``max_iter`` for those that never escape), and
    |z_n|² at the escape (0 for the others)."""
    escaped = (status < 0) & (status != NEVER)
    count = jnp.where(status >= 0, ALIVE, jnp.where(escaped, -status, max_iter))
    return z_re, z_im, count, jnp.where(escaped, modulus_sq, 0)


@partial(jax.jit, static_argnames="kind")
def _first_round(z_re, z_im, c_re, c_im, stop, max_iter, radius_sq, *, kind):
    """The first round (steps 0 to ``FIRST_STEPS``, or ``stop`` if sooner) for one chunk of
    pixels, as :func:`_round` would compute it from step 0, and with the cardioid test: see
    :func:`_in_picture`.

    Every pixel takes ``FIRST_STEPS`` unchecked steps; those then out of the radius are re-run
    from z_0 testing every step, for the exact n and |z_n|², the value tested (the re-run starts
    from a copy of z_0 that only they hold, so the compiler cannot merge it with the unchecked
    steps and round them differently). Mandelbrot
    pixels in the cardioid or the bulb never escape. z (Julia) or c (Mandelbrot) are per pixel,
    the other one may be a scalar.
    """
    size = max(z_re.size, c_re.size)
    z_re, z_im = jnp.broadcast_to(z_re, (size,)), jnp.broadcast_to(z_im, (size,))
    c_re, c_im = jnp.broadcast_to(c_re, (size,)), jnp.broadcast_to(c_im, (size,))
    a, b = z_re, z_im
    for _ in range(FIRST_STEPS):
        a, b = a * a - b * b + c_re, (a + a) * b + c_im
    a, b = lax.optimization_barrier((a, b))  # materialized once, as in _iterate_tile
    out = ~(a * a + b * b <= radius_sq)  # nan counts as out
    x, y = jnp.where(out, z_re, jnp.nan), jnp.where(out, z_im, jnp.nan)
    found = jnp.zeros(size, jnp.int32)
    modulus_sq = jnp.zeros(size, z_re.dtype)
    for k in range(FIRST_STEPS):
        x, y = x * x - y * y + c_re, (x + x) * y + c_im
        first = out & (found == 0) & ~(x * x + y * y <= radius_sq)
        found = jnp.where(first, k + 1, found)
        modulus_sq = jnp.where(first, x * x + y * y, modulus_sq)
    never = _in_cardioid_or_bulb(c_re, c_im) if kind == "mandelbrot" else jnp.zeros(size, bool)
    escaped = (found > 0) & (found <= stop) & ~never  # after `stop`: no escape within max_iter
    count = jnp.where(escaped, found, jnp.where(never, max_iter, ALIVE))
    return a, b, count, jnp.where(escaped, modulus_sq, 0)


@partial(jax.jit, static_argnames="kind")
def _round(z_re, z_im, c_re, c_im, first_step, stop, max_iter, radius_sq, *, kind):
    """A later round for one chunk of live pixels: see :func:`_in_picture`.

    ``c_re``/``c_im`` are per pixel (Mandelbrot) or scalars (Julia). Padding slots hold a nan
    z (and c), which counts as escaped at once; the caller drops their results.
    """
    size = z_re.shape[0]
    tile = min(TILE, size) if _on_cpu() else size
    c_re, c_im = jnp.broadcast_to(c_re, (size,)), jnp.broadcast_to(c_im, (size,))
    status = jnp.full(size, first_step)

    def run(t):
        return _iterate_tile(*t, first_step, stop, radius_sq)

    tiles = tuple(a.reshape(size // tile, tile) for a in (z_re, z_im, c_re, c_im, status))
    return _in_picture(*(a.reshape(size) for a in lax.map(run, tiles)), max_iter)


def compile_kernels(dtype=np.float32) -> None:
    """Compile both round kernels of every bucket for both kinds (start-up warm-up: no request
    waits)."""
    dtype = np.dtype(dtype)
    chunk = CHUNK if _on_cpu() else ACCELERATOR_CHUNK
    size = MIN_BUCKET
    while size <= chunk:
        nan, zero = np.full(size, np.nan, dtype), np.zeros((), dtype)  # nan escapes at once
        limits = (np.int32(8), np.int32(8), dtype.type(4))  # stop, max_iter, radius²
        for kind, z, c in (("mandelbrot", zero, nan), ("julia", nan, zero)):
            jax.block_until_ready(_first_round(z, z, c, c, *limits, kind=kind))
            jax.block_until_ready(_round(nan, nan, c, c, np.int32(0), *limits, kind=kind))
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


def _state(rows: int, capacity: int, dtype: np.dtype) -> np.ndarray:
    """Uninitialised live-pixel state, ``rows`` × ``capacity`` (the live pixels' buckets), with
    64-byte-aligned rows so that each chunk goes to JAX without a copy."""
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
    and the flat pixel index as the bits of a number of the same size), as long as their
    buckets (:func:`chunk_sizes`): a chunk is a view of it, handed to JAX as it is. After a
    round, each chunk's pixels that are done are written into the picture, and its survivors
    gathered straight into the next round's array. The first round takes every pixel in order,
    so it fills only the pixels' own row(s): Mandelbrot's z_0 = 0 is a scalar, and a survivor's
    index is its place.
    """
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, not {max_iter}")
    width, height = x.size, y.size
    n_pixels = width * height
    radius_sq = dtype.type(escape_radius) ** 2
    index_type = np.dtype(f"int{8 * dtype.itemsize}")
    counts = np.empty(n_pixels, np.int32)  # the first round writes every pixel
    modulus_sq = np.empty(n_pixels, dtype)
    mandelbrot = kind == "mandelbrot"
    chunk = CHUNK if _on_cpu() else ACCELERATOR_CHUNK

    live = _state(5 if mandelbrot else 3, sum(chunk_sizes(n_pixels, chunk)), dtype)
    pixel_re, pixel_im = (2, 3) if mandelbrot else (0, 1)
    live[pixel_re, :n_pixels].reshape(height, width)[:] = x
    live[pixel_im, :n_pixels].reshape(height, width)[:] = y[:, None]
    # z_0 = 0 and c = the pixel (Mandelbrot), or z_0 = the pixel and one c for all (Julia)
    zero = np.zeros((), dtype)
    c_re, c_im = np.asarray(c.real, dtype), np.asarray(c.imag, dtype)
    n_live = n_pixels

    step = 0
    lengths = _round_lengths()
    while n_live and step < max_iter:
        report(step, max_iter, "iterations")
        stop = min(step + next(lengths), max_iter)
        live[:-1, n_live:] = np.nan  # padding escapes at once; its results are dropped
        calls, start = [], 0
        limits = (np.int32(stop), np.int32(max_iter), radius_sq)
        for size in chunk_sizes(n_live, chunk):  # dispatched asynchronously, then collected
            part = live[:, start:start + size]
            z = (zero, zero) if mandelbrot and step == 0 else (part[0], part[1])
            pixel_c = (part[2], part[3]) if mandelbrot else (c_re, c_im)
            if step == 0:
                call = _first_round(*z, *pixel_c, *limits, kind=kind)
            else:
                call = _round(*z, *pixel_c, np.int32(step), *limits, kind=kind)
            calls.append((start, min(size, n_live - start), call))
            start += size
        in_order = n_live == n_pixels  # nothing dropped yet: chunk k holds pixels start..start+n
        rounds = [(start, n, *_record_done(
                      slice(start, start + n) if in_order else live[-1, start:start + n].view(index_type),
                      call, n, counts, modulus_sq))
                  for start, n, call in calls]
        n_live = sum(len(alive) for *_, alive in rounds)
        following = _state(live.shape[0], sum(chunk_sizes(n_live, chunk)), dtype)
        at = 0
        for start, n, z_re, z_im, alive in rounds:
            end = at + len(alive)
            np.take(z_re, alive, out=following[0, at:end])
            np.take(z_im, alive, out=following[1, at:end])
            for row in range(2, live.shape[0] - 1):
                np.take(live[row, start:start + n], alive, out=following[row, at:end])
            index = following[-1, at:end].view(index_type)
            if in_order:
                np.add(alive, start, out=index, casting="unsafe")
            else:
                np.take(live[-1, start:start + n].view(index_type), alive, out=index)
            at = end
        live = following
        step = stop
    # the pixels alive after max_iter steps: ALIVE in the picture so far
    counts[slice(None) if n_live == n_pixels else live[-1, :n_live].view(index_type)] = max_iter
    return counts.reshape(height, width), modulus_sq.reshape(height, width)


def _record_done(pixel, call, n, counts, modulus_sq):
    """Write one chunk's pixels that are done (escaped, or never will) into the picture (flat
    indices ``pixel``, or a slice of the picture while the live pixels are still all of them, in
    order: then every pixel of the slice, ALIVE ones too); return the chunk's z after the
    round and the positions of its pixels still alive."""
    z_re, z_im, chunk_counts, chunk_modulus_sq = (np.asarray(a)[:n] for a in call)
    alive = chunk_counts == ALIVE
    if isinstance(pixel, slice):
        counts[pixel], modulus_sq[pixel] = chunk_counts, chunk_modulus_sq
    else:
        done = np.flatnonzero(~alive)
        counts[pixel[done]], modulus_sq[pixel[done]] = chunk_counts[done], chunk_modulus_sq[done]
    return z_re, z_im, np.flatnonzero(alive)


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
