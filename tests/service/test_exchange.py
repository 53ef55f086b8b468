"""Blocks of shared memory between the HTTP process and its local workers (compute/exchange.py),
here without Ray: the "worker" side maps each block afresh from /dev/shm by its name, as a worker
process does, so what is checked is what crosses the file, not this process's own mapping."""

from __future__ import annotations

import dataclasses
import errno
import gc
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from labcrunch_service.compute import exchange
from labcrunch_service.compute.exchange import Exchange, Packed, SharedArray
from labcrunch_service.compute.scheduler import payload_bytes

pytestmark = pytest.mark.skipif(not os.path.isdir(exchange.SHM_DIR), reason="no /dev/shm here")

MB = 2**20


@dataclasses.dataclass(frozen=True)
class Answer:
    value: np.ndarray
    gradient: np.ndarray
    names: tuple[str, ...]


def files_of_this_process() -> set[str]:
    return {name for name in os.listdir(exchange.SHM_DIR)
            if name.startswith(f"{exchange.PREFIX}{os.getpid()}-")}


@pytest.fixture
def pool():
    pool = Exchange(256 * MB)
    yield pool
    pool.close()
    exchange._mapped.clear()


def worker_side(packed: Packed) -> tuple[tuple, dict]:
    exchange._mapped.clear()  # map the file afresh, as a new worker would
    return exchange.unpack(packed)


def test_arrays_cross_through_a_block_and_the_answer_comes_back(pool):
    rng = np.random.default_rng(1)
    column = rng.normal(size=200_000)
    fortran = np.asfortranarray(rng.normal(size=(300, 400)).astype(np.float32))
    big_endian = rng.normal(size=100_000).astype(">f8")
    strided = rng.normal(size=400_000)[::2]
    flags = rng.random(100_000) < 0.5
    small = np.arange(10.0)
    payload = ((column,), {"at": {"x": fortran, "y": big_endian, "z": strided, "flags": flags},
                           "small": small, "name": "text"})
    packed, lease = pool.pack(payload)
    assert payload_bytes(packed) < 1024  # only descriptors and the small array travel in the call

    args, kwargs = worker_side(packed)
    received = [args[0], *kwargs["at"].values()]
    for sent, got in zip([column, fortran, big_endian, strided, flags], received, strict=True):
        np.testing.assert_array_equal(got, sent)
        assert got.dtype == sent.dtype and got.shape == sent.shape
        assert not got.flags.writeable and got.ctypes.data % exchange.ALIGN == 0
    assert kwargs["small"] is small and kwargs["name"] == "text"

    # The worker's answer: large arrays into the rest of the block, the rest as it is.
    value, gradient = np.sin(args[0]), np.stack([args[0], 2 * args[0]], axis=-1)
    sent = exchange.pack_answer(packed, Answer(value, gradient, ("x", "y")))
    assert isinstance(sent.value, SharedArray) and isinstance(sent.gradient, SharedArray)
    answer = lease.answer(sent)
    np.testing.assert_array_equal(answer.value, np.sin(column))
    np.testing.assert_array_equal(answer.gradient[:, 1], 2 * column)
    assert answer.names == ("x", "y") and lease.state == "answered"


def test_an_answer_larger_than_the_room_left_travels_as_it_is(pool):
    packed, lease = pool.pack(((np.ones(100_000),), {}))
    room = packed.size - packed.answer_at
    too_big = np.ones(room // 8 + 1)
    fits = np.ones(100_000)
    worker_side(packed)
    sent = exchange.pack_answer(packed, [fits, too_big])
    assert isinstance(sent[0], SharedArray) and sent[1] is too_big
    answer = lease.answer(sent)
    assert answer[1] is too_big and answer[0].sum() == 100_000


def test_a_block_is_lent_again_once_nothing_refers_to_its_answer(pool):
    before = files_of_this_process()
    first, lease = pool.pack(((np.ones(1_000_000),), {}))
    worker_side(first)
    kept = lease.answer(exchange.pack_answer(first, np.full(1_000_000, 3.0)))
    second, lease2 = pool.pack(((np.ones(1_000_000),), {}))
    assert second.block != first.block  # the first block's answer is still referred to
    lease2.give_back()
    assert kept.sum() == 3_000_000
    del kept
    gc.collect()
    (third, lease3), (fourth, lease4) = (pool.pack(((np.zeros(1_000_000),), {})) for _ in "34")
    assert {third.block, fourth.block} == {first.block, second.block}  # both free again
    assert pool.describe()["blocks"] == 2 and len(files_of_this_process() - before) == 2  # no third
    lease3.give_back()
    lease4.give_back()


def test_an_abandoned_block_is_removed_and_never_lent_again(pool):
    """A job that ended without its worker's answer (deadline, cancel): that worker may still
    write into the block, so it goes; a later job gets a new one."""
    packed, lease = pool.pack(((np.ones(1_000_000),), {}))
    path = os.path.join(exchange.SHM_DIR, packed.block)
    assert os.path.exists(path)
    lease.abandon()
    assert not os.path.exists(path) and pool.describe()["blocks"] == 0
    late = lease.answer(["the worker's late answer"])  # ignored: the job has ended
    assert late == ["the worker's late answer"]
    again, lease = pool.pack(((np.ones(1_000_000),), {}))
    assert again.block != packed.block
    lease.give_back()


def test_the_budget_bounds_the_blocks_and_free_ones_make_room(pool):
    small = Exchange(16 * MB)
    try:
        packed, lease = small.pack(((np.ones(500_000),), {}))  # 4 MB arrays: a 16 MB block
        assert packed.size == 16 * MB
        assert small.pack(((np.ones(500_000),), {})) is None  # lent: no room for a second one
        assert small.pack(((np.ones(1_000_000),), {})) is None  # 8 MB: a 32 MB block
        lease.give_back()
        again, lease = small.pack(((np.ones(500_000),), {}))
        assert again.block == packed.block
        lease.give_back()
    finally:
        small.close()
    assert Exchange(0).pack(((np.ones(1_000_000),), {})) is None


def test_a_request_too_large_for_the_budget_keeps_the_free_blocks():
    pool = Exchange(64 * MB)
    try:
        leases = [pool.pack(((np.ones(100_000),), {}))[1] for _ in range(2)]
        for lease in leases:
            lease.give_back()
        assert pool.pack(((np.ones(4_000_000),), {})) is None  # 32 MB: a 128 MB block
        assert pool.describe()["free_blocks"] == 2
    finally:
        pool.close()
    assert pool.pack(((np.ones(100_000),), {})) is None  # closed: no more blocks


def test_small_arrays_and_other_kinds_stay_in_the_call(pool):
    masked = np.ma.masked_array(np.ones(100_000), mask=np.zeros(100_000, bool))
    records = np.zeros(100_000, dtype=[("a", "f8")])
    objects = np.empty(100_000, dtype=object)
    assert pool.pack(((np.ones(100), masked, records, objects, [1.0] * 10_000), {})) is None
    assert pool.describe()["blocks"] == 0


def test_a_list_of_numbers_is_not_walked(pool):
    """A JSON body's 10⁵ points arrive as lists of numbers: looking into each number for arrays
    cost ~100 ms a request (caught by `bench fit`). A list that starts with a number is taken as
    numbers only, so an array after one is not looked for."""
    points = [0.5] * 100_000
    assert pool.pack(((points, [1, np.ones(100_000)]), {"at": {"x": points}})) is None
    packed, lease = pool.pack(((points, [np.ones(100_000), 1]), {}))
    assert packed.payload[0][0] is points and isinstance(packed.payload[0][1][0], SharedArray)
    lease.give_back()


def test_a_full_dev_shm_means_no_block_not_a_crash(pool, monkeypatch, caplog):
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    before = files_of_this_process()
    monkeypatch.setattr(exchange.os, "posix_fallocate", full)
    with caplog.at_level(logging.WARNING):
        assert pool.pack(((np.ones(1_000_000),), {})) is None
    assert "Ray's object store" in caplog.text
    assert pool.describe() == {**pool.describe(), "bytes": 0, "blocks": 0}
    assert files_of_this_process() == before  # the file made for it was removed


def test_idle_blocks_are_removed_and_workers_let_go_of_them(pool):
    lent, lease = pool.pack(((np.ones(1_000_000),), {}))
    idle, idle_lease = pool.pack(((np.ones(1_000_000),), {}))
    worker_side(idle)
    idle_lease.give_back()
    pool.trim(idle_seconds=3600)
    assert pool.describe()["blocks"] == 2  # returned just now
    pool.trim(idle_seconds=0)
    assert pool.describe()["blocks"] == 1 and pool.describe()["bytes"] == lent.size
    assert not os.path.exists(os.path.join(exchange.SHM_DIR, idle.block))
    assert idle.block in exchange._mapped
    exchange.unpack(lent)  # the worker's next job
    assert idle.block not in exchange._mapped and lent.block in exchange._mapped
    lease.give_back()


def test_close_unlinks_every_block_and_views_stay_valid():
    pool = Exchange(64 * MB)
    packed, lease = pool.pack(((np.ones(1_000_000),), {}))
    worker_side(packed)
    answer = lease.answer(exchange.pack_answer(packed, np.full(1_000_000, 2.0)))
    pool.close()
    assert not os.path.exists(os.path.join(exchange.SHM_DIR, packed.block))
    assert answer.sum() == 2_000_000
    exchange._mapped.clear()


def test_blocks_of_ended_processes_are_removed_at_start(tmp_path):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    orphan = os.path.join(exchange.SHM_DIR, f"{exchange.PREFIX}{int(ended.stdout)}-0123456789ab")
    ours = os.path.join(exchange.SHM_DIR, f"{exchange.PREFIX}{os.getpid()}-0123456789ab")
    for path in (orphan, ours):
        with open(path, "wb") as f:
            f.write(b"x")
    try:
        Exchange(MB).close()  # a new pool sweeps at start
        assert not os.path.exists(orphan) and os.path.exists(ours)
    finally:
        for path in (orphan, ours):
            if os.path.exists(path):
                os.unlink(path)


def test_a_column_is_padded_where_it_lies_when_its_block_has_room(pool):
    column = np.arange(100_000.0)
    packed, lease = pool.pack(((column, column.astype(np.float32)), {}))
    (view, single), _ = worker_side(packed)
    longer = exchange.padded(view, 125_000)  # a quarter more: the room each array has
    assert longer.flags.writeable and longer.ctypes.data == view.ctypes.data
    longer[100_000:] = -1.0
    np.testing.assert_array_equal(longer[:100_000], column)
    np.testing.assert_array_equal(single, column.astype(np.float32))  # the next array is intact
    assert exchange.padded(view, 125_001) is None  # beyond its room
    assert exchange.padded(view[:50_000], 60_000) is None  # not one of the request's arrays
    assert exchange.padded(np.arange(100_000.0), 110_000) is None
    exchange.unpack(((), {}))  # the next job (inline arguments): the last one's are forgotten
    assert exchange.padded(view, 110_000) is None
    lease.give_back()


def test_a_remote_workers_payload_is_copied_out_of_the_block(pool):
    column = np.arange(100_000.0)
    packed, lease = pool.pack(((column,), {"n": 3}))
    (copied,), kwargs = lease.copy_out(packed)
    np.testing.assert_array_equal(copied, column)
    assert copied.base is None  # its own memory, not a view of the block
    assert kwargs == {"n": 3}
    lease.give_back()
