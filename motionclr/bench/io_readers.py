"""The readers `motionclr bench io` compares, on one clip workload, and how they are timed.

Every reader returns the same samples: ``{"rgb": (1, T, H, W, 3), "flow": (1, T, H, W, 2)}``
uint8, channel-last, as ``ShardClipDataset`` serves them.
"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import cv2
import h5py
import numpy as np


# ----------------------------------------------------------------------------- readers

def workload(videos: list[dict], n: int, clip_len: int, stride: int, seed: int):
    """(epoch, video index, frame indices) items, epoch-major in a shuffled video order.

    Frame indices are exactly what ``ShardClipDataset`` draws for (seed, epoch, index) with
    ``RandomClip``, so every reader reads the same clips; the first ``len(videos)`` items
    touch distinct videos (what the cold runs read).
    """
    from motionclr.datasets.samplers import RandomClip
    sampler = RandomClip(clip_len, stride)
    order_rng = np.random.default_rng([seed, 12345])
    items = []
    epoch = 0
    while len(items) < n:
        for i in order_rng.permutation(len(videos)):
            rng = np.random.default_rng([seed, epoch, int(i)])
            items.append((epoch, int(i), sampler(videos[i]["n_frames"], rng)[0]))
        epoch += 1
    return items[:n]


def disjoint_items(items: list, per_video: int) -> list:
    """Up to ``per_video`` items per video whose frame spans do not overlap, kept in the
    workload's order: a cold run over them never reads a byte a previous clip brought in
    (beyond the kernel's own read-ahead), so it can be longer than one clip per video."""
    spans: dict[int, list] = {}
    out = []
    for e, i, idx in items:
        lo, hi = int(idx[0]), int(idx[-1]) + 1
        mine = spans.setdefault(i, [])
        if len(mine) < per_video and all(hi + 1 < a or b + 1 < lo for a, b in mine):
            mine.append((lo, hi))
            out.append((e, i, idx))
    return out


class ShardWorkload:
    """Our reader: ``ShardClipDataset.__getitem__`` at the workload's (epoch, index)."""

    def __init__(self, stage_dir: Path, items, clip_len, stride, seed, check: bool = True):
        from motionclr.datasets.samplers import RandomClip
        from motionclr.datasets.shard_dataset import ShardClipDataset
        self.ds = ShardClipDataset(stage_dir, subset=None, sampler=RandomClip(clip_len, stride),
                                   seed=seed, check=check)
        self.items = items

    def __len__(self):
        return len(self.items)

    def _plan(self, j):
        epoch, i, _ = self.items[j]
        self.ds.epoch = epoch  # what set_epoch does; per worker copy
        return self.ds.plan(i)

    @staticmethod
    def _sample(s):
        return {"rgb": s["rgb"], "flow": s["flow"]}

    def __getitem__(self, j):
        return self._sample(self.ds.read(self._plan(j)))

    def disk_bytes(self, js) -> int:
        """Bytes the read-ahead hints of items ``js`` cover (``FrameReader.spans``): what
        the disk delivers for them, skipped frames inside a span included."""
        total = 0
        for j in js:
            p = self._plan(j)
            for reqs in p["reqs"].values():
                total += sum(n for r in reqs for _, n in p["reader"].spans(*r))
        return total

    def __getitems__(self, js):
        """A batch as the dataset serves one: hints for every clip first, then the reads."""
        plans = [self._plan(j) for j in js]
        for p in plans:
            self.ds.advise(p)
        return [self._sample(self.ds.read(p)) for p in plans]


class _LazyH5:
    """Opens its HDF5 file on first use in each process (handles must not cross a fork)."""

    def __init__(self, path: Path):
        self.path, self._f, self._pid = path, None, None

    def file(self):
        if self._pid != os.getpid():
            self._f, self._pid = h5py.File(self.path, "r"), os.getpid()
        return self._f

    def __getstate__(self):
        return {"path": self.path, "_f": None, "_pid": None}


class CompactWorkload(_LazyH5):
    def __init__(self, path: Path, videos, items):
        super().__init__(path)
        self.videos, self.items = videos, items

    def __getstate__(self):
        return {**super().__getstate__(), "videos": self.videos, "items": self.items}

    def __len__(self):
        return len(self.items)

    def __getitem__(self, j):
        from motionclr.pipeline import compact
        _, i, idx = self.items[j]
        v = self.videos[i]
        g = self.file()["videos"][v["video_id"]]
        rgb = compact.read_rgb(g, idx)
        flow = compact.read_flow(g, np.minimum(idx, v["n_frames"] - 2))
        return {"rgb": rgb[None], "flow": flow[None]}  # channel-last, like the dataset


class _Items:
    """A workload's clips over files under ``root``: item ``j`` -> (video record, frames)."""

    def __init__(self, root: Path, videos, items):
        self.root, self.videos, self.items = root, videos, items

    def __len__(self):
        return len(self.items)

    def _item(self, j):
        _, i, idx = self.items[j]
        return self.videos[i], idx


class JpegWorkload(_Items):
    """mmaction2 / CoCLR style frame folders, decoded with OpenCV."""

    def __getitem__(self, j):
        from motionclr.pipeline.compact import _IMREAD_RGB
        v, idx = self._item(j)
        d = self.root / v["video_id"]
        if _IMREAD_RGB is not None:
            rgb = [cv2.imread(str(d / f"img_{t + 1:05d}.jpg"), _IMREAD_RGB) for t in idx]
        else:
            rgb = [cv2.imread(str(d / f"img_{t + 1:05d}.jpg"))[..., ::-1] for t in idx]
        fidx = np.minimum(idx, v["n_frames"] - 2)
        flow = [np.stack([cv2.imread(str(d / f"{c}_{t + 1:05d}.jpg"), cv2.IMREAD_GRAYSCALE)
                          for c in "xy"], axis=-1) for t in fidx]
        return {"rgb": np.stack(rgb)[None], "flow": np.stack(flow)[None]}


class FfmpegWorkload(_Items):
    """On-the-fly decoding of the source video: one ffmpeg per clip, seeking to its start,
    decoding the clip's span at the shards' size, subsampling in numpy. RGB only."""

    def __getitem__(self, j):
        from motionclr.pipeline.decode import ffmpeg_exe
        v, idx = self._item(j)
        lo, span = int(idx[0]), int(idx[-1] - idx[0]) + 1
        w, h = v["width"], v["height"]
        cmd = [ffmpeg_exe(), "-loglevel", "error", "-nostdin", "-ss", f"{lo / v['fps']:.4f}",
               "-i", str(self.root / v["source"]), "-frames:v", str(span),
               "-vf", f"scale={w}:{h}:flags=area", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "pipe:"]
        raw = subprocess.run(cmd, capture_output=True, check=True).stdout
        frames = np.frombuffer(raw, np.uint8)[: (len(raw) // (w * h * 3)) * w * h * 3]
        frames = frames.reshape(-1, h, w, 3)
        if len(frames) < span:  # a clip at the very end may come back short: repeat the last
            frames = np.concatenate([frames, np.repeat(frames[-1:], span - len(frames), 0)])
        rgb = frames[idx - lo]
        return {"rgb": np.ascontiguousarray(rgb)[None]}


# ----------------------------------------------------------------------------- timing

def drop_caches() -> bool:
    """Drop the page cache (root on Linux); False where not permitted."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def _sample_bytes(s: dict) -> int:
    return sum(int(np.asarray(v).nbytes) for v in s.values())


def time_single(ds, n: int, budget_s: float, batch: int = 8) -> tuple[int, float, int]:
    """Read items 0, 1, ... in this process, ``batch`` at a time (through ``__getitems__``
    where the reader has one, as a DataLoader would), until ``n`` items or ``budget_s``.
    Returns (clips, seconds, bytes)."""
    get_many = getattr(ds, "__getitems__", None) or (lambda js: [ds[j] for j in js])
    t0 = time.perf_counter()
    nbytes = k = 0
    n = min(n, len(ds))
    while k < n:
        js = list(range(k, min(k + batch, n)))
        nbytes += sum(_sample_bytes(s) for s in get_many(js))
        k += len(js)
        if time.perf_counter() - t0 > budget_s:
            break
    return k, time.perf_counter() - t0, nbytes


def time_loader(ds, n: int, budget_s: float, workers: int, batch: int = 8,
                with_startup: bool = False):
    """Through ``DataLoader(num_workers=workers, batch_size=batch)``. The clock starts at the
    first batch (worker start-up excluded) unless ``with_startup``. Returns (clips, s, bytes)."""
    import torch
    from torch.utils.data import DataLoader, Subset
    loader = DataLoader(Subset(ds, range(min(n, len(ds)))), batch_size=batch,
                        num_workers=workers, shuffle=False)
    t0 = time.perf_counter()
    it = iter(loader)
    k = nbytes = 0
    if not with_startup:
        try:
            next(it)
        except StopIteration:
            return 0, 0.0, 0
        t0 = time.perf_counter()
    for b in it:
        k += len(next(iter(b.values())))
        nbytes += sum(int(v.numel() * v.element_size()) for v in b.values()
                      if isinstance(v, torch.Tensor))
        if time.perf_counter() - t0 > budget_s:
            break
    el = time.perf_counter() - t0
    del it
    return k, el, nbytes


def hint_all_then_read(ds: "ShardWorkload", n: int) -> tuple[float, int]:
    """The clip access pattern at its deepest queue: read-ahead hints for all ``n`` clips
    first, then the reads. Not how a loader can work (it would need every future clip up
    front); it measures what the disk gives this pattern of many ~50 KB ranges, as a
    ceiling next to the sequential raw read. Returns (seconds, bytes)."""
    plans = [ds._plan(j) for j in range(min(n, len(ds)))]
    t0 = time.perf_counter()
    for p in plans:
        ds.ds.advise(p)
    nbytes = sum(_sample_bytes(ds._sample(ds.ds.read(p))) for p in plans)
    return time.perf_counter() - t0, nbytes


def raw_read(files: list[Path], block: int = 8 << 20) -> tuple[float, int]:
    """cat-style sequential read of ``files`` into one reused buffer: (seconds, bytes)."""
    buf = bytearray(block)
    view = memoryview(buf)
    total = 0
    t0 = time.perf_counter()
    for p in files:
        with open(p, "rb", buffering=0) as f:
            while True:
                got = f.readinto(view)
                if not got:
                    break
                total += got
    return time.perf_counter() - t0, total


def random_read(files: list[Path], n: int, req: int = 1 << 20, depth: int = 1,
                seed: int = 0) -> tuple[float, int]:
    """The disk's own rate for random ``req``-byte reads: ``n`` aligned ranges of
    ``files`` read with ``O_DIRECT`` (no page cache, so neither its CPU cost nor
    read-ahead counts) by ``depth`` threads, i.e. up to ``depth`` requests in flight.
    Where ``O_DIRECT`` is refused (tmpfs), buffered reads with ``POSIX_FADV_RANDOM``.
    Returns (seconds, bytes)."""
    import mmap
    from concurrent.futures import ThreadPoolExecutor
    rng = np.random.default_rng(seed)
    slots = [(p, k * req) for p in files for k in range(p.stat().st_size // req)]
    picks = [slots[i] for i in rng.choice(len(slots), min(n, len(slots)), replace=False)]
    fds = {}
    for p in files:
        try:
            fds[p] = os.open(p, os.O_RDONLY | getattr(os, "O_DIRECT", 0))
        except OSError:
            fds[p] = os.open(p, os.O_RDONLY)
            os.posix_fadvise(fds[p], 0, 0, os.POSIX_FADV_RANDOM)
    bufs = [mmap.mmap(-1, req) for _ in range(depth)]  # page-aligned, as O_DIRECT needs

    def one(j):
        p, off = picks[j]
        return os.preadv(fds[p], [bufs[j % depth]], off)
    try:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(depth) as ex:
            total = sum(ex.map(one, range(len(picks))))
        return time.perf_counter() - t0, total
    finally:
        for fd in fds.values():
            os.close(fd)
