"""Large arrays between the HTTP process and a worker on the same machine, through blocks of
shared memory that both processes keep mapped and reuse (as Triton's Python backend does).

Through Ray's object store, a 10⁶-point gradient's columns (16 MB) and its answer (24 MB) are
each copied into shared memory that the receiving process maps afresh, and on a virtual machine
faulting those pages in costs several times the copy itself (16 MB: ~19 ms into fresh shared
memory, ~3 ms into pages already mapped). Here the HTTP process keeps a few *blocks* (files in
``/dev/shm``, allocated whole with ``posix_fallocate``: a full ``/dev/shm`` is an error when a
block is made, never a SIGBUS later) and lends one to each job with large arrays:

* :meth:`Exchange.pack` (HTTP process) copies the job's arrays into a block and puts
  :class:`SharedArray` descriptors in their place: the job's payload becomes a small
  :class:`Packed`;
* :func:`unpack` (worker) maps the block, once (the worker keeps its last few mappings), and
  hands the task read-only views. Each array has room after it for a quarter more items, which a
  task may fill to pad a batch up to its compiled size in place (:func:`padded`) instead of
  copying it; :func:`pack_answer` copies the answer's large arrays into the rest of the block
  where they fit (``ANSWER_ROOM`` times the request's arrays; an answer that does not fit travels
  through Ray as before);
* :meth:`Lease.answer` (HTTP process) turns the answer's descriptors into views of the block. The
  block is lent again once nothing refers to those views any more (a finalizer); a block whose job
  ended without its worker's answer (deadline, cancel, lost worker) may still be written by that
  worker, so it is never lent again: it is unlinked and dropped (:meth:`Lease.abandon`).

Only workers on the HTTP process's own Ray node get blocks (the scheduler decides); the others
get the arrays themselves. Blocks idle for ``IDLE_SECONDS`` are removed (:meth:`Exchange.trim`),
and a worker lets go of its mappings of removed blocks at its next job. A block's name carries
the pid of the process that made it: blocks left by a process that died without cleaning up
(``kill -9``) are removed by the next one to start.
"""

from __future__ import annotations

import dataclasses
import logging
import mmap
import os
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

SHM_DIR = "/dev/shm"
PREFIX = "labcrunch-"
ALIGN = 64  # every array starts on a cache line (XLA's CPU alignment too)
SHARED_ARRAY_BYTES = 64 * 1024  # smaller arrays travel inside the call
ANSWER_ROOM = 2  # a block holds the request's arrays and twice their bytes for the answer
PAD_ROOM = 4  # after each array, room for 1/PAD_ROOM more (cache.bucket_size pads at most 25 %)
MIN_BLOCK_BYTES = 1 << 20
MAPPED_BLOCKS = 8  # mappings a worker keeps (one per block it has seen lately)
IDLE_SECONDS = 60.0  # a block nobody borrowed for this long is given back to the system


@dataclass(frozen=True)
class SharedArray:
    """Where an array lies in its job's block: C-ordered, ``dtype`` as numpy spells it; the
    block's bytes from ``offset`` up to ``offset + capacity`` are its own (see :func:`padded`)."""

    offset: int
    dtype: str
    shape: tuple[int, ...]
    capacity: int


@dataclass(frozen=True)
class Packed:
    """A job's payload whose large arrays are :class:`SharedArray` s of block ``block`` (a file
    in ``SHM_DIR`` of ``size`` bytes); the worker may write its answer from ``answer_at`` on."""

    payload: Any
    block: str
    size: int
    answer_at: int


# --- both processes --------------------------------------------------------------------------

def numbers_only(items: list[Any] | tuple[Any, ...]) -> bool:
    """Whether a list or tuple is taken as numbers only, never walked item by item: one whose
    first item is a number (a JSON body's 10⁵ points)."""
    return bool(items) and isinstance(items[0], int | float)


def _replace(value: Any, kind: type, fn: Callable[[Any], Any]) -> Any:
    """``value`` with every instance of ``kind`` in it replaced by ``fn(instance)``, through
    tuples, lists, dicts and dataclass instances (rebuilt only where something changed). Only
    ``kind`` itself counts, not its subclasses (a masked array is not shared as a plain one);
    lists of numbers (:func:`numbers_only`) are not walked."""
    if type(value) is kind:
        return fn(value)
    if type(value) in (tuple, list) and not numbers_only(value):
        items = [_replace(v, kind, fn) for v in value]
        changed = any(new is not old for new, old in zip(items, value, strict=True))
        return type(value)(items) if changed else value
    if type(value) is dict:
        changes = {k: new for k, v in value.items() if (new := _replace(v, kind, fn)) is not v}
        return value | changes if changes else value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: new for f in dataclasses.fields(value) if f.init
                   if (new := _replace(getattr(value, f.name), kind, fn)) is not getattr(value, f.name)}
        return dataclasses.replace(value, **changes) if changes else value
    return value


def _shareable(array: np.ndarray) -> bool:
    return array.nbytes >= SHARED_ARRAY_BYTES and not array.dtype.hasobject and array.dtype.fields is None


def _aligned(offset: int) -> int:
    return -(-offset // ALIGN) * ALIGN


def _view(base: np.ndarray, where: SharedArray) -> np.ndarray:
    return np.ndarray(where.shape, np.dtype(where.dtype), base, where.offset)


def _region(array: np.ndarray) -> int:
    """The bytes an array of the request takes in a block: itself and room to pad it."""
    return _aligned(array.nbytes + array.nbytes // PAD_ROOM)


def _copy_in(base: np.ndarray, offset: int, array: np.ndarray, capacity: int) -> SharedArray:
    where = SharedArray(offset, array.dtype.str, array.shape, capacity)
    np.copyto(_view(base, where), array)
    return where


# --- the HTTP process ------------------------------------------------------------------------

class Block:
    """One file of shared memory, mapped in this process."""

    def __init__(self, size: int) -> None:
        self.name = f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.size = size
        self.returned = time.monotonic()  # when it was last given back
        path = os.path.join(SHM_DIR, self.name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.posix_fallocate(fd, 0, size)
            self.buffer = mmap.mmap(fd, size)
        except BaseException:
            os.unlink(path)
            raise
        finally:
            os.close(fd)

    def unlink(self) -> None:
        """Remove the file; the memory goes when the last process mapping it lets go."""
        try:
            os.unlink(os.path.join(SHM_DIR, self.name))
        except FileNotFoundError:
            pass


class Exchange:
    """The HTTP process's blocks, at most ``budget_bytes`` of them together, lent one per job."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes if os.path.isdir(SHM_DIR) else 0
        self._lock = threading.RLock()  # a finalizer may give a block back inside a locked call
        self._blocks: dict[str, Block] = {}  # every block made and not dropped, lent or free
        self._free: list[Block] = []  # the least recently returned first
        self._bytes = 0  # of the blocks, and of those being made
        self.lent = 0  # jobs that got a block (for tests and /v1/info)
        if self.budget:
            remove_orphans()

    def pack(self, payload: Any) -> tuple[Packed, Lease] | None:
        """``payload`` with its large arrays copied into a block, and the block's lease; None
        when it has none or no block can be had (budget, ``/dev/shm`` full): send it as it is."""
        if not self.budget:
            return None
        found: list[np.ndarray] = []
        _replace(payload, np.ndarray, lambda array: found.append(array) or array)
        arrays = [array for array in found if _shareable(array)]
        if not arrays:
            return None
        end = sum(_region(array) for array in arrays)
        block = self._take(end * (1 + ANSWER_ROOM))
        if block is None:
            return None
        base = np.frombuffer(block.buffer, np.uint8)
        cursor = 0

        def share(array: np.ndarray) -> np.ndarray | SharedArray:
            nonlocal cursor
            if not _shareable(array):
                return array
            where = _copy_in(base, cursor, array, _region(array))
            cursor += where.capacity
            return where

        packed = Packed(_replace(payload, np.ndarray, share), block.name, block.size, end)
        return packed, Lease(self, block)

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {"budget_bytes": self.budget, "bytes": self._bytes, "blocks": len(self._blocks),
                    "free_blocks": len(self._free), "jobs": self.lent}

    def trim(self, idle_seconds: float = IDLE_SECONDS) -> None:
        """Remove the free blocks returned more than ``idle_seconds`` ago."""
        cutoff = time.monotonic() - idle_seconds
        with self._lock:
            for block in [b for b in self._free if b.returned < cutoff]:
                self._drop(block)

    def close(self) -> None:
        """Unlink every block (views this process still holds stay valid); lend no more."""
        with self._lock:
            self.budget = 0
            blocks, self._blocks, self._free, self._bytes = list(self._blocks.values()), {}, [], 0
        for block in blocks:
            block.unlink()

    def _take(self, need: int) -> Block | None:
        """A free block of at least ``need`` bytes, or a new one within the budget."""
        size = max(MIN_BLOCK_BYTES, 1 << (need - 1).bit_length())
        with self._lock:
            fits = [block for block in self._free if block.size >= need]
            if fits:
                block = min(fits, key=lambda b: b.size)
                self._free.remove(block)
                self.lent += 1
                return block
            if self._bytes - sum(block.size for block in self._free) + size > self.budget:
                return None  # even without the free blocks it would not fit: keep them
            while self._bytes + size > self.budget:
                self._drop(self._free.pop(0))  # the least recently returned
            self._bytes += size  # reserved while the file is made (outside the lock)
        try:
            block = Block(size)
        except OSError as exc:
            log.warning("no shared-memory block of %d bytes (%s): large arrays go through Ray's "
                        "object store", size, exc)
            with self._lock:
                self._bytes -= size
            return None
        with self._lock:
            if not self.budget:  # closed while the file was made
                block.unlink()
                return None
            self._blocks[block.name] = block
            self.lent += 1
        return block

    def _give_back(self, block: Block) -> None:
        with self._lock:
            if self._blocks.get(block.name) is block:
                block.returned = time.monotonic()
                self._free.append(block)

    def _drop(self, block: Block) -> None:
        """Never lend ``block`` again (under the lock)."""
        if self._blocks.pop(block.name, None) is block:
            self._bytes -= block.size
            if block in self._free:
                self._free.remove(block)
            block.unlink()

    def drop(self, block: Block) -> None:
        with self._lock:
            self._drop(block)


class Lease:
    """One job's loan of a block: ended by the worker's answer, or abandoned."""

    def __init__(self, exchange: Exchange, block: Block) -> None:
        self.exchange = exchange
        self.block = block
        self.state = "lent"

    def answer(self, value: Any) -> Any:
        """The worker's answer with its :class:`SharedArray` s as views of the block, which is
        lent again once none of them is referred to any more."""
        if self.state != "lent":
            return value
        self.state = "answered"
        base = np.frombuffer(self.block.buffer, np.uint8)
        answer = _replace(value, SharedArray, lambda where: _view(base, where))
        weakref.finalize(base, self.exchange._give_back, self.block)
        return answer

    def give_back(self) -> None:
        """The block was never sent: lend it again."""
        if self.state == "lent":
            self.state = "returned"
            self.exchange._give_back(self.block)

    def abandon(self) -> None:
        """The job ended without its worker's answer, which may still be writing: drop the block."""
        if self.state == "lent":
            self.state = "abandoned"
            self.exchange.drop(self.block)

    def copy_out(self, packed: Packed) -> Any:
        """``packed``'s payload with its arrays copied out of the block (for a worker on another
        machine)."""
        base = np.frombuffer(self.block.buffer, np.uint8)
        return _replace(packed.payload, SharedArray, lambda where: _view(base, where).copy())


def remove_orphans() -> int:
    """Unlink the blocks of processes that no longer run; how many."""
    removed = 0
    for name in os.listdir(SHM_DIR):
        pid = name.removeprefix(PREFIX).split("-")[0]
        if not (name.startswith(PREFIX) and pid.isdigit()):
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            try:
                os.unlink(os.path.join(SHM_DIR, name))
                removed += 1
            except OSError:
                pass
        except PermissionError:
            pass  # another user's running process
    return removed


# --- the worker ------------------------------------------------------------------------------

_mapped: OrderedDict[str, np.ndarray] = OrderedDict()  # block name → the block as bytes
_mapped_lock = threading.Lock()
_inputs: dict[int, tuple[np.ndarray, SharedArray]] = {}  # the running job's arrays, by address


def _mapping(name: str) -> np.ndarray:
    with _mapped_lock:
        for gone in [n for n in _mapped if not os.path.exists(os.path.join(SHM_DIR, n))]:
            del _mapped[gone]  # removed by the HTTP process: let its memory go
        base = _mapped.get(name)
        if base is None:
            fd = os.open(os.path.join(SHM_DIR, name), os.O_RDWR)
            try:
                base = _mapped[name] = np.frombuffer(mmap.mmap(fd, 0), np.uint8)
            finally:
                os.close(fd)
            while len(_mapped) > MAPPED_BLOCKS:
                _mapped.popitem(last=False)  # unmapped when the last view of it goes
        _mapped.move_to_end(name)
        return base


def unpack(payload: Any) -> Any:
    """The payload as sent (a :class:`Packed`'s arrays as read-only views of its block)."""
    _inputs.clear()  # a worker runs one job at a time: the last one's are gone
    if not isinstance(payload, Packed):
        return payload
    base = _mapping(payload.block)

    def view(where: SharedArray) -> np.ndarray:
        array = _view(base, where)
        array.flags.writeable = False
        _inputs[array.ctypes.data] = (base, where)
        return array

    return _replace(payload.payload, SharedArray, view)


def padded(array: np.ndarray, length: int) -> np.ndarray | None:
    """``array`` (1-D, of the running job's request) lengthened in place to ``length`` items
    when its block has room after it: a writable array whose first ``len(array)`` items are
    ``array``'s and whose others the caller fills. None when it cannot be done in place."""
    found = _inputs.get(array.ctypes.data) if array.ndim == 1 else None
    if found is None:
        return None
    base, where = found
    if (where.shape, np.dtype(where.dtype)) != (array.shape, array.dtype) or (
            length * array.itemsize > where.capacity):
        return None
    return np.ndarray((length,), array.dtype, base, where.offset)


def pack_answer(payload: Any, value: Any) -> Any:
    """``value`` with the large arrays that fit copied into the answer room of ``payload``'s
    block (a :class:`Packed`; anything else: ``value`` as it is)."""
    if not isinstance(payload, Packed):
        return value
    base = _mapping(payload.block)
    cursor = payload.answer_at

    def share(array: np.ndarray) -> np.ndarray | SharedArray:
        nonlocal cursor
        if not _shareable(array) or _aligned(cursor) + array.nbytes > payload.size:
            return array
        where = _copy_in(base, _aligned(cursor), array, array.nbytes)
        cursor = where.offset + array.nbytes
        return where

    return _replace(value, np.ndarray, share)
