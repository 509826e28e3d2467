"""Reading frames of uncompressed HDF5 datasets at disk speed.

h5py's read path costs more than the read itself for 16-frame clips: hyperslab selection,
the chunk cache, a gather copy, and for strided clips a pathological slow path. Frames of
an uncompressed, time-chunked dataset are fixed byte ranges in the file, so after one
metadata lookup per dataset they can be read straight into the output with ``preadv``.
"""
from __future__ import annotations

import errno
import mmap
import os
import threading
import time
from pathlib import Path

import h5py
import numpy as np

from motionclr.storage.checksums import check_frames
from motionclr.storage.heap import keep_freed_memory

try:
    _IOV_MAX = os.sysconf("SC_IOV_MAX")
except (AttributeError, ValueError, OSError):
    _IOV_MAX = 1024
# Linux >= 4.14: fail a buffered read instead of waiting for the disk. Elsewhere 0, and
# ``read(cached_only=True)`` then reads nothing (callers hint and read as before).
_NOWAIT = getattr(os, "RWF_NOWAIT", 0)
# A file changed less than this long ago may change again within one tick of the kernel's
# coarse timestamp clock, where a second change could leave (mtime, ctime) as they were:
# frames of such a file are checked on every read, never remembered as checked.
SETTLE_NS = 2_000_000_000
# ``O_DIRECT`` wants file offsets, lengths and buffer addresses aligned to the device's
# logical block (512 B or 4 KiB): a page covers both.
ALIGN = mmap.PAGESIZE
_O_DIRECT = getattr(os, "O_DIRECT", 0)
_bounce = threading.local()  # per thread: one page-aligned buffer for direct reads


def _bounce_buffer(n: int) -> mmap.mmap:
    """This thread's page-aligned buffer of at least ``n`` bytes (grown, never shrunk):
    anonymous ``mmap`` memory is page-aligned, as ``O_DIRECT`` needs, and reusing it
    saves faulting in fresh pages for every clip."""
    buf = getattr(_bounce, "buf", None)
    if buf is None or len(buf) < n:
        buf = _bounce.buf = mmap.mmap(-1, max(n, 4 << 20))
    return buf


def _every(mask: np.ndarray) -> bool:
    """``mask.all()`` for a small bool/uint8 array: no byte is 0. For the 16-32 entries of a
    clip this is ~0.3 µs against ~1.2 µs for ``ndarray.all``, whose Python-level wrapper
    costs more than the work; a clip read calls it twice per modality."""
    return mask.tobytes().find(0) < 0


class FrameReader:
    """Frames of uncompressed HDF5 datasets read with ``os.preadv`` straight into the output.

    h5py stays for metadata only: per dataset the byte offset of every chunk is looked up
    once (``get_chunk_info_by_coord``; contiguous layout: ``get_offset``), then frame t of a
    chunk of c frames is the byte range ``chunk_offset[t // c] + (t % c) * frame_bytes``.
    Frames adjacent in the *file* become one ``preadv`` that scatters them into their slots
    of the output, whatever their order in the clip: in a phase-major shard
    (``motionclr.storage.shards``) a stride-2 clip is one read, a stride-1 clip two. Only
    the clip's own frames are read, with one copy (page cache -> output) and no HDF5
    hyperslab machinery, chunk cache or gather copy. Compressed datasets fall back to a
    contiguous h5py range read. The file descriptor is opened lazily per process.
    With ``sums``, every frame read is checked against the checksum recorded when it was
    packed (``motionclr.storage.checksums``): damaged bytes raise ``DamagedShardError``.
    A frame is summed the first time this process reads it; later reads skip the sum while
    the file is unchanged, i.e. while its (inode, size, mtime, ctime) are what they were
    when the frame was checked (one ``fstat`` per read). Any write through the file system
    changes mtime and ctime, so it makes every frame of the file be checked again. This is
    how checksumming file systems work (a block is checked when it comes from the disk,
    not on every page-cache hit): a clip read is a memcpy, and a second pass over the
    bytes to sum them cost about a fifth of it (docs/benchmarks.md, io section).
    ``check_once=False`` sums every frame on every read.
    ``ShardClipDataset`` reads every clip through it (measured in docs/benchmarks.md).
    """

    def __init__(self, path: Path, known: dict | None = None, merge_gap: int = 0,
                 sums=None, check_once: bool = True):
        """``known``: key -> (frames per chunk, chunk offsets, frame shape, dtype) recorded
        at pack time (the manifest), so cold reads need no HDF5 metadata reads at all.
        ``merge_gap``: read-ahead hints bridge gaps of up to this many bytes (``spans``).
        ``sums``: ``.get(key)`` -> recorded per-frame checksums (``FrameSums``) or None;
        keys are ``(video_id, modality)``. ``check_once``: remember which frames were
        checked while the file stays unchanged (above)."""
        self.path = Path(path)
        self.known = known or {}
        self.merge_gap = int(merge_gap)
        self.sums = sums
        self.check_once = bool(check_once)
        self._fd, self._pid, self._tables = None, None, {}
        self._dfd = None  # O_DIRECT descriptor, opened on the first direct read; -1: refused
        self._checked, self._stat = {}, None
        self.frames_summed = 0  # frames whose sum this process computed (tests, bench)

    def __getstate__(self):
        return {"path": self.path, "known": self.known, "merge_gap": self.merge_gap,
                "sums": self.sums, "check_once": self.check_once, "_fd": None, "_pid": None,
                "_dfd": None,
                "_tables": {}, "_checked": {}, "_stat": None, "frames_summed": 0}

    def _unchanged(self) -> bool:
        """Whether frames checked earlier may be trusted now: forgets them all when the
        file's (inode, size, mtime, ctime) moved, and trusts nothing of a file changed
        within ``SETTLE_NS``."""
        st = os.fstat(self._fd)
        stat = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if stat != self._stat:
            self._stat, self._checked = stat, {}
        return time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > SETTLE_NS

    def _check(self, key, idx: np.ndarray, frames: np.ndarray,
               from_disk: bool = False) -> np.ndarray:
        """``frames`` checked against their recorded sums, unless this process checked them
        already and the file is unchanged. ``from_disk``: the bytes were just read from the
        disk (``O_DIRECT``), so they are summed whatever was checked before."""
        if self.sums is None:
            return frames
        settled = self.check_once and self._unchanged()
        # ``_checked[key]``: one uint8 per frame, 1 once checked: bounded by the stage's
        # frame count, whatever the clips. (A set of the index lists read before was
        # faster on a benchmark that rereads its clips, but grows with every new clip.)
        done = self._checked.get(key) if settled else None
        if done is not None and not from_disk and _every(done[idx]):
            return frames
        want = self.sums.get(key)
        if want is None:
            return frames
        check_frames(self.path, key[0], key[1], idx, frames, want)
        self.frames_summed += len(idx)
        if settled:
            if done is None:
                done = self._checked[key] = np.zeros(len(want), np.uint8)
            done[idx] = 1
        return frames

    @staticmethod
    def table(ds: h5py.Dataset):
        """(frames per chunk, chunk byte offsets, frame shape, dtype) or None (compressed)."""
        shape = ds.shape[1:]
        if ds.id.get_create_plist().get_nfilters() > 0:
            return None
        if ds.chunks is None:
            off = ds.id.get_offset()
            return None if off is None else (ds.shape[0], np.array([off], np.int64), shape,
                                             ds.dtype)
        if ds.chunks[1:] != shape:
            return None  # chunks split a frame: offsets are not per frame
        c, zero = ds.chunks[0], (0,) * (ds.ndim - 1)
        offs = [ds.id.get_chunk_info_by_coord((k * c,) + zero).byte_offset
                for k in range(-(-ds.shape[0] // c))]
        return c, np.array(offs, np.int64), shape, ds.dtype

    def _plan(self, key, idx: np.ndarray, get_ds):
        """(table, frame byte positions, frame bytes) of ``idx``; table None = compressed."""
        if self._pid != os.getpid():
            self._fd, self._pid, self._tables = os.open(self.path, os.O_RDONLY), os.getpid(), {}
            self._dfd = None
            self._checked, self._stat = {}, None  # checked by this process, not its parent
            keep_freed_memory()  # clip buffers reused, not re-faulted (storage/heap.py)
        tab = self._tables.get(key, False)
        if tab is False:
            k = self.known.get(key)
            if k is not None:
                c, shape, dtype = int(k[0]), tuple(k[2]), np.dtype(k[3])
                offs = self.decode_offsets(k[1], c * self.frame_bytes(shape, dtype))
                tab = (c, offs, shape, dtype)
            else:
                tab = self.table(get_ds())
            # + the frame size: computed once per dataset, not per read
            tab = self._tables[key] = None if tab is None else \
                (*tab, self.frame_bytes(tab[2], tab[3]))
        if tab is None:
            return None, None, 0
        c, offs, _, _, fb = tab
        # One chunk per frame (what the packer writes): the offsets are the positions.
        return tab, (offs[idx] if c == 1 else offs[idx // c] + (idx % c) * fb), fb

    @staticmethod
    def frame_bytes(shape, dtype) -> int:
        return int(np.prod(shape)) * np.dtype(dtype).itemsize

    @staticmethod
    def encode_offsets(offs, chunk_bytes: int) -> list[list[int]]:
        """Chunk offsets as runs ``[first chunk, step, byte offset, count]``: chunks
        first, first+step, ... lying back to back in the file. A phase-major video is P
        runs per modality, so the manifest stays small for any number of frames."""
        offs = np.asarray(offs, np.int64)
        order = np.argsort(offs, kind="stable")
        runs: list[list[int]] = []
        for k in order.tolist():
            if runs:
                first, step, off, n = runs[-1]
                step = k - first if n == 1 else step  # a run's second chunk sets its step
                if step > 0 and k == first + step * n and offs[k] == off + n * chunk_bytes:
                    runs[-1] = [first, step, off, n + 1]
                    continue
            runs.append([k, 1, int(offs[k]), 1])
        return runs

    @staticmethod
    def decode_offsets(runs, chunk_bytes: int) -> np.ndarray:
        """Inverse of ``encode_offsets``; a plain list of offsets passes through."""
        if not runs or not isinstance(runs[0], (list, tuple)):
            return np.asarray(runs, np.int64)  # manifests written before runs
        n = max(first + step * (count - 1) for first, step, _, count in runs) + 1
        offs = np.full(n, -1, np.int64)
        for first, step, off, count in runs:
            offs[first:first + step * count:step] = off + np.arange(count) * chunk_bytes
        if (offs < 0).any():
            raise ValueError("chunk offset runs do not cover every chunk")
        return offs

    @staticmethod
    def _runs(pos: np.ndarray, fb: int):
        """Frame indices grouped into runs adjacent in the file, each in file order."""
        order = np.argsort(pos, kind="stable")
        breaks = np.flatnonzero(np.diff(pos[order]) != fb) + 1
        return np.split(order, breaks)

    def spans(self, key, idx, get_ds) -> list[tuple[int, int]]:
        """(byte offset, length) ranges that cover ``idx``'s frames, gaps of up to
        ``merge_gap`` bytes bridged; [] for compressed datasets (h5py reads those)."""
        tab, pos, fb = self._plan(key, np.asarray(idx, np.int64), get_ds)
        if tab is None or len(pos) == 0:
            return []
        gaps = np.diff(pos) - fb
        if (gaps == 0).all():  # the common case: frames back to back in the clip's order
            return [(int(pos[0]), len(pos) * fb)]
        order = np.sort(pos)
        gaps = np.diff(order) - fb
        breaks = (np.flatnonzero(gaps > self.merge_gap) + 1).tolist()
        return [(int(order[a]), int(order[b - 1] - order[a] + fb))
                for a, b in zip([0] + breaks, breaks + [len(order)])]

    def advise(self, key, idx, get_ds) -> None:
        """Ask the kernel to start reading ``idx``'s bytes now (``POSIX_FADV_WILLNEED``).

        Hinting a whole batch of clips before reading any keeps many requests in flight.
        ``merge_gap`` > 0 bridges small gaps (a stride-2 clip as one range over its span);
        on the disk measured here that was slower (docs/benchmarks.md, io notes), so the
        default hints exactly the clip's frames. Costs one syscall per range when
        everything is cached already.
        """
        if not hasattr(os, "posix_fadvise"):
            return
        for off, length in self.spans(key, idx, get_ds):
            os.posix_fadvise(self._fd, off, length, os.POSIX_FADV_WILLNEED)

    def read(self, key, idx: np.ndarray, get_ds, out: np.ndarray | None = None,
             cached_only: bool = False, direct: bool = False) -> np.ndarray | None:
        """Frames ``idx`` -> ``(len(idx), *frame_shape)``, into ``out`` when given.

        ``key`` names the dataset (its offsets are cached under it); ``get_ds()`` returns the
        h5py dataset and is only called the first time, or on every read when compressed.
        ``out`` (C-contiguous, e.g. ``clips[v]`` of a ``(V, T, H, W, C)`` array) saves the
        copy of stacking several clips. ``cached_only``: read only if every byte is in the
        page cache already (``RWF_NOWAIT``), else return None at once with nothing checked,
        so a caller can send read-ahead hints for just the clips that need the disk.
        ``direct``: read from the disk with ``O_DIRECT``, past the page cache (``_direct``,
        ``ShardClipDataset.direct``); where the file system refuses it, an ordinary read.
        """
        idx = np.asarray(idx, np.int64)
        tab, pos, fb = self._plan(key, idx, get_ds)
        if cached_only and (tab is None or not _NOWAIT):
            return None  # compressed (h5py reads) or no RWF_NOWAIT: cannot tell what is cached
        if tab is None:
            ds = get_ds()
            lo, hi = int(idx.min()), int(idx.max())
            frames = self._check(key, idx, ds[lo:hi + 1][idx - lo])
            if out is None:
                return frames
            out[...] = frames
            return out
        if out is None:
            out = np.empty((len(idx),) + tab[2], tab[3])
        elif not out.flags.c_contiguous or out.shape != (len(idx),) + tab[2]:
            raise ValueError(f"out must be C-contiguous {(len(idx),) + tab[2]}")
        if len(idx) == 1 or _every(pos[1:] - pos[:-1] == fb):
            runs = [None]  # the common case: one range, in the clip's order
        else:
            runs = self._runs(pos, fb)
        if direct and not cached_only and self.direct_fd() >= 0:
            try:
                for run in runs:
                    self._direct(out, run, int(pos[0 if run is None else run[0]]), fb)
                return self._check(key, idx, out, from_disk=True)
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
                os.close(self._dfd)  # alignment refused by this device: read as usual
                self._dfd = -1
        flags = _NOWAIT if cached_only else 0
        for run in runs:
            if not self._copy(out, run, int(pos[0 if run is None else run[0]]), fb, flags):
                return None
        return self._check(key, idx, out)

    def _copy(self, out: np.ndarray, run: np.ndarray | None, off: int, fb: int,
              flags: int = 0) -> bool:
        """File bytes ``[off, off + len(run) * fb)`` into frames ``run`` of ``out`` (None:
        all of ``out``): one ``preadv``, into one buffer where the frames' slots are
        consecutive in ``out``. False when ``flags`` has ``RWF_NOWAIT`` and some byte was
        not in the page cache.

        (A read-only ``mmap`` of the shard copied faster warm when its pages were already
        mapped, but a process maps them afresh (fault-around, 64 KiB a fault): 125 µs a MiB
        against ``preadv``'s 70 on a first touch, which is every read of a fresh
        DataLoader worker. Kept out.)
        """
        if run is None or (run[-1] - run[0] == len(run) - 1 and
                           (len(run) == 1 or (np.diff(run) == 1).all())):
            bufs = [out if run is None else out[run[0]:run[-1] + 1]]
            return self._preadv(bufs, off, len(bufs[0]) * fb, flags)
        for j in range(0, len(run), _IOV_MAX):  # preadv takes at most IOV_MAX buffers
            part = run[j:j + _IOV_MAX]
            if not self._preadv([out[i] for i in part], off + j * fb, len(part) * fb, flags):
                return False
        return True

    def direct_fd(self) -> int:
        """This process's ``O_DIRECT`` descriptor of the file; -1 where it is refused
        (tmpfs, some network file systems), and then reads go through the page cache."""
        if self._dfd is None:
            try:
                self._dfd = os.open(self.path, os.O_RDONLY | _O_DIRECT) if _O_DIRECT else -1
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
                self._dfd = -1
        return self._dfd

    def _direct(self, out: np.ndarray, run: np.ndarray | None, off: int, fb: int) -> None:
        """File bytes ``[off, off + len(run) * fb)`` into frames ``run`` of ``out`` (None:
        all of it), read with ``O_DIRECT``: the range widened to page boundaries lands
        in this thread's aligned buffer by DMA, then one copy puts the frames in place.

        Why, when a clip is not cached: a buffered cold read makes the kernel allocate and
        fill 4 KiB page-cache folios and then copies out of them; here the disk writes into
        this thread's buffer. On the bench's disk that delivered 82 % of its random-read
        rate against 76 % (docs/benchmarks.md, io section). The pages are not cached, which
        pays only when they would be evicted before the next read of them:
        ``ShardClipDataset.direct``, ``storage.warm.direct_for``.
        """
        n = (len(out) if run is None else len(run)) * fb
        lo = off - off % ALIGN
        hi = -(-(off + n) // ALIGN) * ALIGN
        buf = _bounce_buffer(hi - lo)
        got = os.preadv(self._dfd, [memoryview(buf)[:hi - lo]], lo)
        if got < off + n - lo:  # the file's end may fall inside the last page, no earlier
            raise OSError(f"short read from {self.path}")
        src = np.frombuffer(buf, out.dtype, n // out.itemsize, off - lo)
        if run is None:
            out.reshape(-1)[:] = src
        else:
            out[run] = src.reshape((len(run),) + out.shape[1:])

    def _preadv(self, bufs, off: int, n: int, flags: int) -> bool:
        try:
            got = os.preadv(self._fd, bufs, off, flags)
        except BlockingIOError:  # RWF_NOWAIT: nothing of the range is cached
            return False
        if got == n:
            return True
        if flags:
            return False  # RWF_NOWAIT: part of the range is cached (a short read)
        raise OSError(f"short read from {self.path}")
