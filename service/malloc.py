"""How much freed memory a process keeps for reuse (the C library's allocator, glibc's malloc).

A large batch allocates and frees arrays of tens of MB on every request: its body, the padded
columns, the answer's arrays. By default glibc gives blocks this large back to the system when
they are freed (each is its own mmap, and the heap's free top is trimmed), so the next request's
arrays are fresh pages, each faulted in on first touch: on a virtual machine about 0.5 ms per MB,
tens of milliseconds per 10⁶-point request in the server and in its worker together. Keeping
freed memory lets the next request reuse pages already mapped.

``retain_freed_bytes`` (a setting) is the largest block served from the heap (larger ones are
still mapped and returned one by one) and half the free heap top kept before trimming; 0 keeps
the library's defaults. Elsewhere than glibc (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

# mallopt(3) parameters
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def keep_freed_memory(retain_bytes: int) -> bool:
    """Tune this process's allocator to keep up to about ``2 * retain_bytes`` of freed memory for
    reuse; True when it took effect (glibc, ``retain_bytes`` > 0)."""
    if retain_bytes <= 0 or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        gnu_get_libc_version = libc.gnu_get_libc_version  # glibc only: musl's mallopt is a no-op
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    gnu_get_libc_version.restype = ctypes.c_char_p
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    limit = min(retain_bytes, (2**31 - 1) // 2)  # mallopt takes an int, and the trim twice this
    done = mallopt(M_MMAP_THRESHOLD, limit) == 1 and mallopt(M_TRIM_THRESHOLD, 2 * limit) == 1
    if not done:
        log.warning("glibc %s refused the allocator settings (retain_freed_bytes=%d)",
                    gnu_get_libc_version().decode(), retain_bytes)
    return done
