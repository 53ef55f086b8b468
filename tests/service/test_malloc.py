"""The allocator keeps freed memory for reuse: the kernel's count of page faults shows a second
large block reusing the first one's pages instead of faulting in fresh ones (in a fresh process
per setting, since the setting is process-wide; and in the workers)."""

from __future__ import annotations

import subprocess
import sys

from labcrunch_service.malloc import keep_freed_memory

# Above glibc's largest self-tuned mmap threshold (32 MiB on 64-bit): by default a block this
# size is always mapped afresh and unmapped when freed.
BLOCK = 32 * 2**20
PAGE = 4096


def refaults(block: int = BLOCK) -> int:
    """Minor page faults while a ``block``-byte buffer is allocated and filled again, right after
    one of the same size was freed."""
    import resource

    first = bytearray(block)
    del first
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    again = bytearray(block)
    again[::PAGE] = b"\x01" * len(range(0, block, PAGE))  # touch every page
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    del again
    return faults


def refaults_in_a_process(retain_bytes: int) -> int:
    code = ("from labcrunch_service.malloc import keep_freed_memory; "
            "from tests.service.test_malloc import refaults; "
            f"keep_freed_memory({retain_bytes}); print(refaults())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout)


def test_freed_memory_is_reused_only_when_kept():
    pages = BLOCK // PAGE
    assert refaults_in_a_process(0) > pages // 2  # glibc's defaults: fresh pages
    assert refaults_in_a_process(256 * 2**20) < pages // 20  # kept: the same pages again


def test_nothing_to_keep_changes_nothing():
    assert keep_freed_memory(0) is False


def test_workers_keep_freed_memory(workers):
    """The workers run with the service's default setting (256 MiB)."""
    assert all(faults < BLOCK // PAGE // 20 for faults in workers.call(refaults))
