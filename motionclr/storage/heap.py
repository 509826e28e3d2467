"""Keep freed clip buffers in the process heap instead of handing them back to the kernel.

A batch holds several clips of ~1-2 MB each. With glibc's default (dynamic) thresholds,
the freed batch sits at the top of the heap, is trimmed back to the kernel, and the next
batch's ``np.empty`` gets fresh pages: the kernel zero-fills and maps every 4 KiB page on
its first touch, which is *inside* the ``preadv`` that fills it. Measured here (1.74 MB
RGB + flow clips, batches of 8, warm page cache, one process): 1,000-1,100 µs per clip
with the defaults against 205-215 µs with the heap kept (docs/benchmarks.md, io section).

``keep_freed_memory`` sets two glibc ``mallopt`` parameters for the calling process: no
trimming below ``TRIM_BYTES`` of free heap top, and ``mmap`` only for single allocations
above ``MMAP_BYTES`` (both far above one batch). A process then holds at most its
largest batch's worth of freed memory. Elsewhere than glibc it does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
TRIM_BYTES = 256 << 20
MMAP_BYTES = 32 << 20  # glibc's largest mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
_done_pid: int | None = None


def keep_freed_memory() -> bool:
    """Once per process: set the thresholds above. True when glibc took them."""
    global _done_pid
    if _done_pid == os.getpid():
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (musl, macOS): their allocators decide
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(M_TRIM_THRESHOLD, TRIM_BYTES) == 1 and mallopt(M_MMAP_THRESHOLD,
                                                                 MMAP_BYTES) == 1
    if ok:
        _done_pid = os.getpid()
    return ok
