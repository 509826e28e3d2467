"""Load a finished stage's shards into the page cache by one sequential read per file.

A warm clip read is a copy out of the page cache, and on Linux that copy costs about 2.5x
more when the file's pages are cached as single 4 KiB folios than when they are cached as
large folios. Which one a page is depends on how it got into the cache: pages written by
the packer, or read by random 1-2 MB clip reads, are small; pages brought in by sequential
readahead are large, because readahead raises the folio order as a sequential stream
goes on. Measured here on the bench's shards (ext4, Linux 6.18): ``preadv`` of 1.74 MB
from the cache took 183 µs before and 72 µs after the file was dropped from the cache
and read once sequentially (docs/benchmarks.md, io section).

``warm`` does that when the stage fits in a fraction of the memory available: it drops
the files' clean cached pages (``POSIX_FADV_DONTNEED``) and reads each file once, front
to back, in 8 MiB requests. It costs one sequential read of the stage from the disk. A
stage larger than that fraction is left alone: its clips come from the disk anyway, and
reading it whole would only evict other pages.

``direct_for`` decides the other end: a stage so much larger than memory that most clips
come from the disk is read past the page cache (``ShardClipDataset.direct``).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

BLOCK = 8 << 20


def available_memory() -> int | None:
    """Linux's ``MemAvailable`` in bytes (None where /proc/meminfo has none)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def warm(paths: list[Path], fraction: float) -> dict:
    """Read ``paths`` sequentially into the page cache when their total size is at most
    ``fraction`` of the available memory. Returns ``{"bytes", "seconds"}`` of what was read,
    or ``{"skipped": why}``."""
    paths = [Path(p) for p in paths]
    total = sum(p.stat().st_size for p in paths)
    if fraction <= 0:
        return {"skipped": "data.warm is 0"}
    if not hasattr(os, "posix_fadvise"):
        return {"skipped": "no posix_fadvise on this system"}
    avail = available_memory()
    if avail is None:
        return {"skipped": "available memory unknown"}
    if total > fraction * avail:
        return {"skipped": f"{total / 2**30:.1f} GiB of shards > {fraction:g} x "
                           f"{avail / 2**30:.1f} GiB available"}
    buf = np.empty(BLOCK, np.uint8)
    t0 = time.perf_counter()
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            # Only clean pages are dropped; another reader of the file just reads them again.
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
            off = 0
            while True:
                got = os.preadv(fd, [buf], off)
                if got <= 0:
                    break
                off += got
        finally:
            os.close(fd)
    return {"bytes": total, "seconds": time.perf_counter() - t0}


DIRECT_CHOICES = ("auto", "on", "off")
# ``auto`` reads with O_DIRECT when the stage is larger than this many times the available
# memory. Measured on the bench's disk (docs/benchmarks.md, io section: 76 % against 82 %
# of the disk's random-read rate), a clip read through the page cache when it is not
# cached costs ~1.08x an O_DIRECT read, and a cached one ~0.07x (a warm read). With clips
# drawn uniformly about (memory / stage) of them are cached, so the page cache pays while
# that fraction is above ~0.08, i.e. up to a stage of ~12x memory. O_DIRECT also leaves
# the page cache to other work. (On a disk whose random reads are faster, the page cache's
# per-byte CPU cost weighs more and the break-even moves lower: set ``data.direct=on``.)
DIRECT_AUTO = 10.0


def check_direct(mode: str) -> None:
    """A ``data.direct`` value other than the choices fails with them."""
    if mode not in DIRECT_CHOICES:
        raise ValueError(f"data.direct={mode!r}; valid: {', '.join(DIRECT_CHOICES)}")


def direct_for(paths: list[Path], mode: str) -> tuple[bool, str]:
    """(read clips with ``O_DIRECT``?, why) for ``data.direct`` = ``mode``."""
    check_direct(mode)
    if mode != "auto":
        return mode == "on", f"data.direct={mode}"
    total = sum(Path(p).stat().st_size for p in paths)
    avail = available_memory()
    if avail is None:
        return False, "data.direct=auto: available memory unknown, reads use the page cache"
    big = total > DIRECT_AUTO * avail
    return big, (f"data.direct=auto: {total / 2**30:.1f} GiB of shards "
                 f"{'>' if big else '<='} {DIRECT_AUTO:g} x {avail / 2**30:.1f} GiB available"
                 f" -> {'O_DIRECT' if big else 'page cache'}")
