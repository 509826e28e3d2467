"""The readers `motionclr bench io` compares, on one clip workload, and how they are timed.

Every reader returns the same samples: ``{"rgb": (1, T, H, W, 3), "flow": (1, T, H, W, 2)}``
uint8, channel-last, as ``ShardClipDataset`` serves them.
"""
from __future__ import annotations

import contextlib
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
        return sum(self.requests(js))

    def requests(self, js) -> list[int]:
        """Sizes of the byte ranges items ``js`` read (one per ``FrameReader.spans`` range):
        the disk request sizes of a cold run."""
        out = []
        for j in js:
            p = self._plan(j)
            for reqs in p["reqs"].values():
                out += [n for r in reqs for _, n in p["reader"].spans(*r)]
        return out

    def __getitems__(self, js):
        """A batch as the dataset serves one (``ShardClipDataset.read_many``: cached clips
        at once, hints for all the others before any of them is read)."""
        return [self._sample(s) for s in self.ds.read_many([self._plan(j) for j in js])]


class CopyCeiling:
    """What any reader that copies the clips out of the page cache pays at least: the same
    byte ranges ``ShardWorkload`` reads (``FrameReader.spans``), one ``preadv`` each into a
    fresh array, with no Python per frame, no planning, no hints. Not a loader: the
    ceiling of one, next to the reader."""

    def __init__(self, shards: "ShardWorkload"):
        self.shards, self.items, self._fds, self._spans = shards, shards.items, {}, {}

    def __getstate__(self):
        return {**self.__dict__, "_fds": {}}

    def __len__(self):
        return len(self.items)

    def _ranges(self, j):
        if j not in self._spans:
            p = self.shards._plan(j)
            self._spans[j] = (p["video"]["shard"], [
                [(o, n) for r in reqs for o, n in p["reader"].spans(*r)]
                for reqs in p["reqs"].values()])
        return self._spans[j]

    def __getitem__(self, j):
        shard, mods = self._ranges(j)
        key = (os.getpid(), shard)
        if key not in self._fds:
            self._fds[key] = os.open(self.shards.ds.stage_dir / shard, os.O_RDONLY)
        out = {}
        for m, ranges in zip(("rgb", "flow"), mods):
            buf = np.empty(sum(n for _, n in ranges), np.uint8)
            at = 0
            for o, n in ranges:
                os.preadv(self._fds[key], [buf[at:at + n]], o)
                at += n
            out[m] = buf
        return out


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
    """On-the-fly decoding by a subprocess: one ffmpeg per clip, seeking to its start,
    decoding the clip's span at the shards' size, subsampling in numpy. RGB only. Starting
    the process is most of its cost; no real loader works this way (``PyAVWorkload`` and
    ``Cv2Workload`` are the in-process decoders)."""

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


def have_pyav() -> bool:
    import importlib.util
    return importlib.util.find_spec("av") is not None


class PyAVWorkload(_Items):
    """In-process decoding with PyAV (libavcodec), as video loaders do it (torchvision's
    pyav backend, mmaction2's ``PyAVDecode``): open the file, seek to the key frame at or
    before the clip's first frame, decode forward, index frames by their timestamps
    (frame-accurate), and convert only the clip's frames. Conversion and the area resize
    run through a libavfilter graph ``scale=W:H:flags=area,format=rgb24``, the same
    swscale path ``decode_video`` feeds the shards with, so the frames are bit-identical to
    the shards'. One decoding thread: DataLoader workers are the parallelism. RGB only."""

    def __init__(self, root: Path, videos, items):
        super().__init__(root, videos, items)
        self._graphs: dict = {}  # per process: one filter graph per stream geometry

    def __getstate__(self):
        return {**self.__dict__, "_graphs": {}}

    def _graph(self, stream, w: int, h: int):
        import av
        cc = stream.codec_context
        key = (os.getpid(), cc.width, cc.height, cc.pix_fmt, stream.time_base, w, h)
        if key not in self._graphs:
            g = av.filter.Graph()
            g.threads = 1  # one thread in all (libavfilter would use every core)
            nodes = [g.add_buffer(template=stream), g.add("scale", f"{w}:{h}:flags=area"),
                     g.add("format", "rgb24"), g.add("buffersink")]
            for a, b in zip(nodes, nodes[1:]):
                a.link_to(b)
            g.configure()
            self._graphs = {k: v for k, v in self._graphs.items() if k[0] == os.getpid()}
            self._graphs[key] = g
        return self._graphs[key]

    def __getitem__(self, j):
        import av
        v, idx = self._item(j)
        lo, hi = int(idx[0]), int(idx[-1])
        want = {int(t): [] for t in idx}
        out = np.empty((len(idx), v["height"], v["width"], 3), np.uint8)
        for k, t in enumerate(idx.tolist()):
            want[t].append(k)
        got = last = None
        with av.open(str(self.root / v["source"])) as c:
            s = c.streams.video[0]
            s.thread_count = 1
            fps, tb = s.average_rate, s.time_base
            start = s.start_time or 0
            graph = self._graph(s, v["width"], v["height"])
            c.seek(start + int(lo / fps / tb), stream=s, backward=True, any_frame=False)
            got = 0
            for fr in c.decode(s):
                t = int(round((fr.pts - start) * tb * fps))
                if t > hi:
                    break
                if t in want:
                    graph.push(fr)
                    last = graph.pull().to_ndarray()
                    for k in want.pop(t):
                        out[k] = last
                        got += 1
        if want:  # the stream ended early: repeat the last decoded frame (as the pipe row)
            if last is None:
                raise RuntimeError(f"{v['source']}: no frame decoded for {lo}..{hi}")
            for ks in want.values():
                out[ks] = last
        return {"rgb": out[None]}


class Cv2Workload(_Items):
    """In-process decoding with ``cv2.VideoCapture`` (OpenCV's FFmpeg backend, one thread):
    seek with ``CAP_PROP_POS_FRAMES`` (frame-accurate: it decodes forward from the key
    frame), ``grab`` every frame of the span and ``retrieve`` (convert) only the clip's,
    then an area resize (``INTER_AREA``) to the shards' size. Its colour conversion and
    resize are OpenCV's, so frames match the shards' to a few grey levels, not bit-exactly.
    RGB only."""

    def __getitem__(self, j):
        v, idx = self._item(j)
        lo, hi = int(idx[0]), int(idx[-1])
        size = (v["width"], v["height"])
        cap = cv2.VideoCapture(str(self.root / v["source"]), cv2.CAP_FFMPEG,
                               [cv2.CAP_PROP_N_THREADS, 1])
        try:
            cap.set(cv2.CAP_PROP_POS_FRAMES, lo)
            frames, last = {}, None
            wanted = set(idx.tolist())
            for t in range(lo, hi + 1):
                if not cap.grab():
                    break
                if t in wanted:
                    ok, bgr = cap.retrieve()
                    if ok:
                        last = cv2.cvtColor(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA),
                                            cv2.COLOR_BGR2RGB)
                        frames[t] = last
        finally:
            cap.release()
        if last is None:
            raise RuntimeError(f"{v['source']}: no frame decoded for {lo}..{hi}")
        return {"rgb": np.stack([frames.get(t, last) for t in idx.tolist()])[None]}


class ShardFrames(_Items):
    """The shards' RGB frames ``shift`` after each item's (clamped to the video), read with
    h5py: what ``check_frames`` compares a reader with to catch an off-by-one seek."""

    def __init__(self, stage_dir: Path, videos, items, shift: int = 1):
        super().__init__(stage_dir, videos, items)
        self.shift = shift

    def __getitem__(self, j):
        v, idx = self._item(j)
        idx = np.clip(idx + self.shift, 0, v["n_frames"] - 1)
        lo, hi = int(idx.min()), int(idx.max())
        with h5py.File(self.root / v["shard"], "r") as f:
            return {"rgb": f["videos"][v["video_id"]]["rgb"][lo:hi + 1][idx - lo][None]}


def check_frames(name: str, ds, ref, ref_next, js, exact: bool, tol: float = 8.0) -> float:
    """Refuse to time a reader that does not return the workload's frames.

    Every modality ``ds`` returns for items ``js`` is compared with ``ref`` (the shard
    reader at the same items). ``exact``: bit-identical. Otherwise (lossy JPEG, OpenCV's
    own colour conversion and resize) the mean absolute difference must stay under ``tol``
    grey levels, and, summed over the items, under the RGB difference to ``ref_next`` (the
    shards' frames one later), so an off-by-one seek cannot pass. Returns the largest mean
    absolute difference."""
    worst, near, shifted = 0.0, 0.0, 0.0
    for j in js:
        a, b = ds[j], ref[j]
        for m, x in a.items():
            x, y = np.asarray(x), np.asarray(b[m])
            if x.shape != y.shape:
                raise RuntimeError(f"bench io: {name} returned {m} {x.shape}, the shards "
                                   f"{y.shape} (item {j})")
            d = float(np.abs(x.astype(np.int16) - y).mean())
            if exact and d:
                raise RuntimeError(f"bench io: {name} {m} differs from the shards' frames "
                                   f"(item {j}, mean |diff| {d:.3f})")
            worst = max(worst, d)
            if m == "rgb":
                near += d
                shifted += float(np.abs(x.astype(np.int16) - ref_next[j][m]).mean())
    if worst > tol or (not exact and near >= shifted):
        raise RuntimeError(f"bench io: {name} does not return the workload's frames (mean "
                           f"|diff| up to {worst:.2f}; summed {near:.2f} against the right "
                           f"frames, {shifted:.2f} against the next ones)")
    return worst


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
    Returns (clips, seconds, bytes). One torch thread, as in a DataLoader worker (the
    reader's checksum sums through torch, which would otherwise use every core)."""
    import torch
    get_many = getattr(ds, "__getitems__", None) or (lambda js: [ds[j] for j in js])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
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
    finally:
        torch.set_num_threads(threads)


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


def random_read(files: list[Path], sizes: list[int], depth: int = 1,
                seed: int = 0) -> tuple[float, int]:
    """The disk's own rate for random reads of the given request ``sizes`` (each rounded up
    to 4 KiB): one read per size at a random aligned offset of ``files``, with
    ``O_DIRECT`` (no page cache, so neither its CPU cost nor read-ahead counts), by
    ``depth`` threads, i.e. up to ``depth`` requests in flight. Where ``O_DIRECT`` is
    refused (tmpfs), buffered reads with ``POSIX_FADV_RANDOM``. Returns (seconds, bytes)."""
    import mmap
    from concurrent.futures import ThreadPoolExecutor
    rng = np.random.default_rng(seed)
    sizes = [-(-int(n) // 4096) * 4096 for n in sizes]
    big = max(sizes)
    slots = [(p, k * big) for p in files for k in range(p.stat().st_size // big)]
    picks = [slots[i] for i in rng.choice(len(slots), min(len(sizes), len(slots)),
                                          replace=len(sizes) > len(slots))]
    fds = {}
    for p in files:
        try:
            fds[p] = os.open(p, os.O_RDONLY | getattr(os, "O_DIRECT", 0))
        except OSError:
            fds[p] = os.open(p, os.O_RDONLY)
            os.posix_fadvise(fds[p], 0, 0, os.POSIX_FADV_RANDOM)
    bufs = [mmap.mmap(-1, big) for _ in range(depth)]  # page-aligned, as O_DIRECT needs

    def one(j):
        p, off = picks[j]
        return os.preadv(fds[p], [memoryview(bufs[j % depth])[:sizes[j]]], off)
    try:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(depth) as ex:
            total = sum(ex.map(one, range(len(picks))))
        return time.perf_counter() - t0, total
    finally:
        for fd in fds.values():
            os.close(fd)


# ----------------------------------------------------------------------------- transforms

AUG_OPS = ("channels_first", "to_float", "random_resized_crop_boxes",
           "motion_focused_crop_boxes", "flow_motion_map", "apply_boxes", "hflip",
           "color_jitter", "random_grayscale", "gaussian_blur", "normalize")


class _OpTimer:
    """Times the augmentation's steps: wraps the ``motionclr.datasets.transforms``
    functions ``GPUAugment`` calls (module globals, so its own calls go through the
    wrappers) while inside ``with``; a step called from inside another counts only there."""

    def __init__(self, clock=time.perf_counter):
        from motionclr.datasets import transforms
        self.module, self.seconds, self._depth, self._saved = transforms, {}, 0, {}
        self.clock = clock

    def _wrap(self, name, fn):
        def timed(*a, **kw):
            self._depth += 1
            t0 = self.clock()
            try:
                return fn(*a, **kw)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self.seconds[name] = self.seconds.get(name, 0.0) + self.clock() - t0
        return timed

    def __enter__(self):
        for name in AUG_OPS:
            fn = getattr(self.module, name, None)
            if fn is not None:
                self._saved[name] = fn
                setattr(self.module, name, self._wrap(name, fn))
        return self

    def __exit__(self, *exc):
        for name, fn in self._saved.items():
            setattr(self.module, name, fn)
        self._saved = {}


def time_transforms(ds, n: int, budget_s: float, method, batch: int = 8, seed: int = 0,
                    breakdown: bool = False) -> tuple[int, float, float, dict]:
    """A CPU training step's data side on one thread: read ``batch`` clips, collate,
    ``batch_to_device`` (CPU) and ``method.views`` (crop, flip, colour, blur, normalise),
    until ``n`` clips or ``budget_s`` of wall time. Returns (clips, wall seconds, CPU
    seconds, per-step CPU seconds), the augmentation's own steps listed when
    ``breakdown``."""
    import torch
    from torch.utils.data import default_collate

    from motionclr.datasets.shard_dataset import batch_to_device
    get_many = getattr(ds, "__getitems__", None) or (lambda js: [ds[j] for j in js])
    gen = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    steps = {"read": 0.0, "collate": 0.0, "batch_to_device": 0.0, "method.views": 0.0}
    cpu = time.process_time  # this process's CPU time: other jobs on the machine do not count
    timer = _OpTimer(cpu)
    k, n = 0, min(n, len(ds))
    try:
        with timer if breakdown else contextlib.nullcontext():
            t0, c0 = time.perf_counter(), cpu()
            while k < n:
                js = list(range(k, min(k + batch, n)))
                t = cpu()
                samples = get_many(js)
                t1 = cpu()
                b = default_collate([{m: torch.from_numpy(s[m]) for m in ("rgb", "flow")
                                      if m in s} for s in samples])
                t2 = cpu()
                b = batch_to_device(b, "cpu")
                t3 = cpu()
                method.views(b, gen)
                t4 = cpu()
                for name, a, z in (("read", t, t1), ("collate", t1, t2),
                                   ("batch_to_device", t2, t3), ("method.views", t3, t4)):
                    steps[name] += z - a
                k += len(js)
                if time.perf_counter() - t0 > budget_s:
                    break
            el, el_cpu = time.perf_counter() - t0, cpu() - c0
    finally:
        torch.set_num_threads(threads)
    if breakdown:
        steps.update({f"  {name}": v for name, v in timer.seconds.items()})
    return k, el, el_cpu, steps

